"""Talks to the worker with the official openai package: lists the models, asks for a completion
streamed and not, and sends a bad parameter. Prints what it got as JSON."""
import json
import sys

import openai

def counts(usage):
    return {k: getattr(usage, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
prompt = sys.argv[2]
result = {"models": [m.id for m in client.models.list().data]}
model = result["models"][0]

whole = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, seed=1)
result["whole"] = {
    "object": whole.object,
    "text": whole.choices[0].text,
    "finish_reason": whole.choices[0].finish_reason,
    "usage": counts(whole.usage),
}

text, finish, usage, chunks = "", None, None, 0
for chunk in client.completions.create(
    model=model, prompt=prompt, max_tokens=8, temperature=0, seed=1, stream=True,
    stream_options={"include_usage": True},
):
    chunks += 1
    assert chunk.object == "text_completion", chunk
    if chunk.choices:
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage is not None:
        usage = counts(chunk.usage)
result["streamed"] = {"text": text, "finish_reason": finish, "usage": usage, "chunks": chunks}

stopped = client.completions.create(model=model, prompt=prompt, max_tokens=20, temperature=0, stop=", Thus")
result["stopped"] = {"text": stopped.choices[0].text, "finish_reason": stopped.choices[0].finish_reason}

try:
    client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=5)
    result["bad"] = None
except openai.BadRequestError as e:
    result["bad"] = {"status": e.status_code, "error": e.body}
print(json.dumps(result))
