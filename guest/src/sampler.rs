//! Token sampling: repetition penalty, temperature, top-k, top-p, min-p, then one seeded draw.

use crate::error::{Error, Result};
use crate::tensor::kernels;

/// How the next token is drawn (mirrors the WIT `sampling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: f32, max: f32| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(Error::request(format!("{name} must be in 0..={max}, got {v}")))
            }
        };
        check("temperature", self.temperature, 2.0)?;
        check("top_p", self.top_p, 1.0)?;
        check("min_p", self.min_p, 1.0)?;
        check("repetition_penalty", self.repetition_penalty, 2.0)
    }
}

/// SplitMix64: a small, fast generator whose stream is fixed by its seed on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Draws tokens with fixed parameters and its own random stream. Its buffers are sized on the
/// first token and reused, so drawing allocates nothing.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// (id, logit) pairs while top-k chooses, then (id, weight) pairs while top-p does.
    order: Vec<(u32, f32)>,
    /// Ids of the candidates, in the order of `weights`.
    ids: Vec<u32>,
    /// Weights of the candidates: probabilities up to a common factor.
    weights: Vec<f32>,
    /// Which ids the repetition penalty has already touched.
    seen: Vec<bool>,
    /// Sums of `weights` in chunks of `DRAW_CHUNK`, for the draw.
    chunk_sums: Vec<f64>,
}

/// Candidates per chunk of the draw's walk.
const DRAW_CHUNK: usize = 256;

impl Sampler {
    /// A sampler after checking `params`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Sampler {
            params,
            rng,
            order: Vec::new(),
            ids: Vec::new(),
            weights: Vec::new(),
            seen: Vec::new(),
            chunk_sums: Vec::new(),
        })
    }

    /// Picks the next token from `logits` (modified in place); `history` is every token so far
    /// (prompt and output), for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.penalize(logits, history);
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        self.candidates(logits);
        self.draw()
    }

    /// One candidate, drawn in proportion to its weight. The weights are summed in chunks, so the
    /// walk to the drawn one passes whole chunks by their sums and then steps through one.
    fn draw(&mut self) -> u32 {
        let sums = &mut self.chunk_sums;
        sums.clear();
        sums.extend(self.weights.chunks(DRAW_CHUNK).map(kernels::sum));
        let mut target = self.rng.next_f64() * sums.iter().sum::<f64>();
        let chunks = self.ids.chunks(DRAW_CHUNK).zip(self.weights.chunks(DRAW_CHUNK));
        for ((ids, weights), &sum) in chunks.zip(sums.iter()) {
            if target < sum {
                for (&id, &w) in ids.iter().zip(weights) {
                    target -= w as f64;
                    if target < 0.0 {
                        return id;
                    }
                }
                // The steps' sum came out a rounding below the chunk's: its last candidate.
                return ids[ids.len() - 1];
            }
            target -= sum;
        }
        self.ids.last().copied().unwrap_or(0)
    }

    /// The tokens that survive top-k, top-p and min-p, with their (unnormalised) probabilities
    /// after temperature: most likely first when top-p has chosen them, else in id order.
    pub fn candidates(&mut self, logits: &[f32]) -> (&[u32], &[f32]) {
        let p = self.params;
        let (ids, weights) = (&mut self.ids, &mut self.weights);
        ids.clear();
        weights.clear();
        let top_k = p.top_k as usize;
        if top_k > 0 && top_k < logits.len() {
            let order = &mut self.order;
            order.clear();
            order.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
            order.select_nth_unstable_by(top_k - 1, most_likely_first);
            order.truncate(top_k);
            order.sort_unstable_by_key(|&(id, _)| id);
            ids.extend(order.iter().map(|&(id, _)| id));
            weights.extend(order.iter().map(|&(_, l)| l));
        } else {
            ids.extend(0..logits.len() as u32);
            weights.extend_from_slice(logits);
        }
        let max = kernels::max(weights);
        kernels::exp_shifted(weights, max, 1.0 / p.temperature);
        if p.top_p < 1.0 {
            self.keep_top_p();
        }
        if p.min_p > 0.0 {
            // The most likely token survives every filter and has weight e^0 = 1.
            self.keep(|w| w >= p.min_p);
        }
        (&self.ids, &self.weights)
    }

    /// Keeps the most likely candidates, most likely first (equal weights by id), up to the
    /// first whose cumulative share of the total reaches top-p. Only those at least `floor` as
    /// likely as the best are sorted; when they hold less than top-p, the floor goes down.
    fn keep_top_p(&mut self) {
        let (ids, weights, order) = (&mut self.ids, &mut self.weights, &mut self.order);
        let total = kernels::sum(weights);
        let mut floor = 1e-4f32;
        loop {
            order.clear();
            order.extend(ids.iter().zip(weights.iter()).filter(|&(_, &w)| w >= floor).map(|(&id, &w)| (id, w)));
            order.sort_unstable_by(most_likely_first);
            let mut cumulative = 0.0;
            let reached = order.iter().position(|&(_, w)| {
                cumulative += w as f64 / total;
                cumulative >= self.params.top_p as f64
            });
            let keep = match reached {
                Some(last) => last + 1,
                None if floor == 0.0 => order.len(),
                None => {
                    floor = if floor > 1e-30 { floor * 1e-6 } else { 0.0 };
                    continue;
                }
            };
            ids.clear();
            weights.clear();
            ids.extend(order[..keep].iter().map(|&(id, _)| id));
            weights.extend(order[..keep].iter().map(|&(_, w)| w));
            return;
        }
    }

    /// Keeps the candidates whose weight passes `test`, in their order.
    fn keep(&mut self, test: impl Fn(f32) -> bool) {
        let mut kept = 0;
        for i in 0..self.weights.len() {
            if test(self.weights[i]) {
                (self.ids[kept], self.weights[kept]) = (self.ids[i], self.weights[i]);
                kept += 1;
            }
        }
        self.ids.truncate(kept);
        self.weights.truncate(kept);
    }

    /// Divides positive logits of tokens seen in `history` by the penalty and multiplies
    /// negative ones by it; stays finite even for a penalty of 0.
    fn penalize(&mut self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.params.repetition_penalty;
        if penalty == 1.0 {
            return;
        }
        let seen = &mut self.seen;
        seen.clear();
        seen.resize(logits.len(), false);
        for &id in history {
            let Some(flag) = seen.get_mut(id as usize) else { continue };
            if std::mem::replace(flag, true) {
                continue;
            }
            let l = &mut logits[id as usize];
            if *l > 0.0 {
                *l = (*l / penalty).min(f32::MAX);
            } else {
                *l *= penalty;
            }
        }
    }
}

/// The order of (id, logit or weight) pairs that top-k and top-p keep a prefix of: larger
/// values first, and the lower id first among equals.
fn most_likely_first(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Index of the largest value, the first one among equals; NaNs are passed over, but a NaN in
/// first place is the answer (0 for no values).
pub fn argmax(values: &[f32]) -> u32 {
    match values.first() {
        Some(first) if !first.is_nan() => kernels::position(values, kernels::max(values)).unwrap_or(0) as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p, min_p, repetition_penalty: 1.0, seed: 7 }
    }

    /// Draws `n` tokens from `logits` at temperature 1 and compares each token's share with its
    /// softmax probability.
    fn assert_draws_follow_the_softmax(logits: &[f32], n: usize) {
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let mut sampler = Sampler::new(params(1.0, 0, 1.0, 0.0)).unwrap();
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[sampler.sample(&mut logits.to_vec(), &[]) as usize] += 1;
        }
        for (i, &count) in counts.iter().enumerate() {
            let expected = (logits[i] as f64).exp() / z;
            let observed = count as f64 / n as f64;
            // Five standard deviations of a binomial proportion.
            let tolerance = 5.0 * (expected * (1.0 - expected) / n as f64).sqrt();
            assert!((observed - expected).abs() <= tolerance, "token {i}: {observed} vs {expected}");
        }
    }

    #[test]
    fn draws_follow_the_softmax() {
        assert_draws_follow_the_softmax(&[1.0, 2.0, 0.5, -1.0, 3.0], 200_000);
        // Over several chunks of the draw's walk: the likely tokens at both ends of a chunk and in
        // the last, partial one; the rest all but impossible.
        let mut logits = vec![-40.0f32; 3 * DRAW_CHUNK + 17];
        for (id, logit) in [(0, 1.0), (DRAW_CHUNK - 1, 2.0), (DRAW_CHUNK, 0.5), (2 * DRAW_CHUNK + 3, 1.5)] {
            logits[id] = logit;
        }
        *logits.last_mut().unwrap() = 2.5;
        assert_draws_follow_the_softmax(&logits, 100_000);
    }

    #[test]
    fn filters_keep_exactly_what_they_should() {
        let logits = [0.0f32, 3.0, 2.0, 1.0, (0.05f32).ln() + 3.0];
        let ids = |p: SamplingParams| -> Vec<u32> { Sampler::new(p).unwrap().candidates(&logits).0.to_vec() };
        // Without top-p the candidates keep id order; with it, the most likely come first.
        assert_eq!(ids(params(1.0, 2, 1.0, 0.0)), [1, 2]);
        assert_eq!(ids(params(1.0, 0, 1.0, 0.0)), [0, 1, 2, 3, 4]);
        assert_eq!(ids(params(1.0, 0, 0.999, 0.0)), [1, 2, 3, 4, 0]);
        // Probabilities: 3.0 → 0.63, 2.0 → 0.23, 1.0 → 0.09 ...: 0.63 + 0.23 ≥ 0.8.
        assert_eq!(ids(params(1.0, 0, 0.8, 0.0)), [1, 2]);
        assert_eq!(ids(params(1.0, 0, 0.0, 0.0)), [1]);
        // min-p 0.1 keeps tokens at least a tenth as likely as the best: e^-2 = 0.135 stays,
        // 0.05 and e^-3 go.
        assert_eq!(ids(params(1.0, 0, 1.0, 0.1)), [1, 2, 3]);
        assert_eq!(ids(params(1.0, 0, 0.999, 0.1)), [1, 2, 3]);
    }

    #[test]
    fn top_k_keeps_what_a_full_sort_keeps() {
        // Few distinct logits, so many tie: lower ids win ties.
        let logits: Vec<f32> = (0..3_000).map(|i| ((i * 7919 % 13) as f32).sin().round()).collect();
        for k in [1, 2, 7, 1_000, 2_999] {
            let mut sorted: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut want: Vec<u32> = sorted[..k].iter().map(|&(id, _)| id).collect();
            want.sort();
            let mut sampler = Sampler::new(params(1.0, k as u32, 1.0, 0.0)).unwrap();
            assert_eq!(sampler.candidates(&logits).0, want, "top-k {k}");
        }
    }

    #[test]
    fn top_p_keeps_what_a_full_sort_keeps() {
        // Top-p sorts only the likeliest candidates; here the first floor holds too little of
        // the total (one leader and a long tail of equals) or everything (a flat spread).
        let leader: Vec<f32> = (0..100_000).map(|i| if i == 777 { 10.0 } else { 0.0 }).collect();
        let spread: Vec<f32> = (0..5_000).map(|i| (i as f32 * 0.37).sin()).collect();
        for (logits, top_p, temperature) in
            [(&leader, 0.5, 1.0), (&leader, 0.1, 1.0), (&spread, 0.9, 0.7), (&spread, 0.3, 2.0)]
        {
            let all = params(temperature, 0, 1.0, 0.0);
            let (ids, weights) = {
                let mut sampler = Sampler::new(all).unwrap();
                let (ids, weights) = sampler.candidates(logits);
                (ids.to_vec(), weights.to_vec())
            };
            let mut sorted: Vec<(u32, f32)> = ids.into_iter().zip(weights).collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let total: f64 = sorted.iter().map(|&(_, w)| w as f64).sum();
            let mut cumulative = 0.0;
            let keep = sorted.iter().position(|&(_, w)| {
                cumulative += w as f64 / total;
                cumulative >= top_p as f64
            });
            let want: Vec<u32> = sorted[..keep.unwrap() + 1].iter().map(|&(id, _)| id).collect();
            let mut sampler = Sampler::new(params(temperature, 0, top_p, 0.0)).unwrap();
            assert_eq!(sampler.candidates(logits).0, want, "top-p {top_p}");
        }
    }

    #[test]
    fn argmax_takes_the_first_largest() {
        let mut logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32).collect();
        // 100.0 comes back every 101 values.
        let first = (0..1000).position(|i| (i * 37) % 101 == 100).unwrap();
        assert_eq!(argmax(&logits), first as u32);
        logits[first] = f32::NAN;
        let second = (first + 1..1000).position(|i| (i * 37) % 101 == 100).unwrap() + first + 1;
        assert_eq!(argmax(&logits), second as u32, "a NaN is passed over");
        logits[999] = f32::INFINITY;
        assert_eq!(argmax(&logits), 999);
        assert_eq!(argmax(&[f32::NAN, 1.0, 2.0]), 0, "a NaN in first place stays");
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        assert_eq!(argmax(&[-0.0, 0.0, -1.0]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn greedy_and_penalty() {
        let mut sampler = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() }).unwrap();
        // Token 0 leads, but it was seen: 4.0 / 2 = 2.0 < 3.0.
        assert_eq!(sampler.sample(&mut [4.0, 3.0, -1.0], &[0, 0]), 1);
        let mut zero = Sampler::new(SamplingParams { repetition_penalty: 0.0, ..SamplingParams::greedy() }).unwrap();
        let mut logits = [1.0, 3.0, 0.0];
        assert_eq!(zero.sample(&mut logits, &[0, 2]), 0);
        assert!(logits.iter().all(|l| l.is_finite()));
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = || {
            let mut s = Sampler::new(params(0.8, 40, 0.9, 0.02)).unwrap();
            (0..50).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn rejects_out_of_range_parameters() {
        for bad in [
            params(-0.1, 0, 1.0, 0.0),
            params(f32::NAN, 0, 1.0, 0.0),
            params(1.0, 0, 1.5, 0.0),
            params(1.0, 0, 1.0, 2.0),
        ] {
            assert!(Sampler::new(bad).is_err(), "{bad:?}");
        }
    }
}
