//! Remasking strategies: how sure the model is of the token it proposes at a masked position.
//! Higher scores are committed first.

use serde::{Deserialize, Serialize};

/// Confidence score used to rank masked positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Probability of the proposed token (LLaDA `low_confidence`, Dream `maskgit_plus`).
    LowConfidence,
    /// Uniform random scores (LLaDA `random`).
    Random,
    /// Top-1 minus top-2 probability (Dream `topk_margin`).
    Margin,
    /// Negative entropy sum p ln p of the predictive distribution (Dream `entropy`).
    Entropy,
    /// Leftmost masked position first: the autoregressive baseline.
    LeftToRight,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::LowConfidence,
        Strategy::Random,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::LeftToRight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::LowConfidence => "low-confidence",
            Strategy::Random => "random",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::LeftToRight => "left-to-right",
        }
    }
}

/// Summary of a predictive distribution at one position, enough for every score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    /// Probability of the proposed token.
    pub proposed: f32,
    /// Largest and second largest probabilities.
    pub top1: f32,
    pub top2: f32,
    /// sum p ln(p + 1e-10), as Dream computes it (<= 0; higher means surer).
    pub neg_entropy: f32,
}

impl Distribution {
    /// Softmax of `logits` summarised for the token `proposed`, in one pass with one exponential
    /// per entry (sums in f64). The entropy uses sum p ln p = (sum e d) / S - ln S with
    /// d = l - max and e = exp(d); it equals Dream's sum p ln(p + 1e-10) up to that epsilon.
    pub fn from_logits(logits: &[f32], proposed: usize) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mut sum, mut weighted) = (0.0f64, 0.0f64);
        let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        for &l in logits {
            let d = (l - max) as f64;
            let e = d.exp();
            if e > 0.0 {
                sum += e;
                weighted += e * d;
            }
            if l > first {
                second = first;
                first = l;
            } else if l > second {
                second = l;
            }
        }
        let prob = |l: f32| (((l - max) as f64).exp() / sum) as f32;
        Self {
            proposed: prob(logits[proposed]),
            top1: prob(first),
            top2: if second.is_finite() {
                prob(second)
            } else {
                0.0
            },
            neg_entropy: (weighted / sum - sum.ln()) as f32,
        }
    }
}

/// The score of a position under `strategy`; `uniform` is a fresh U[0,1) draw (used by `Random`).
pub fn score(strategy: Strategy, dist: &Distribution, position: usize, uniform: f64) -> f64 {
    match strategy {
        Strategy::LowConfidence => dist.proposed as f64,
        Strategy::Random => uniform,
        Strategy::Margin => (dist.top1 - dist.top2) as f64,
        Strategy::Entropy => dist.neg_entropy as f64,
        Strategy::LeftToRight => -(position as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_of_hand_made_logits() {
        // softmax([ln 6, ln 3, ln 1]) = [0.6, 0.3, 0.1]
        let logits = [6f32.ln(), 3f32.ln(), 0.0];
        let d = Distribution::from_logits(&logits, 1);
        assert!((d.proposed - 0.3).abs() < 1e-6);
        assert!((d.top1 - 0.6).abs() < 1e-6);
        assert!((d.top2 - 0.3).abs() < 1e-6);
        let h = 0.6f32 * 0.6f32.ln() + 0.3 * 0.3f32.ln() + 0.1 * 0.1f32.ln();
        assert!((d.neg_entropy - h).abs() < 1e-5);
    }

    #[test]
    fn each_strategy_ranks_as_documented() {
        let sure = Distribution::from_logits(&[5.0, 0.0, 0.0], 0);
        let unsure = Distribution::from_logits(&[1.0, 0.9, 0.0], 0);
        for strategy in [Strategy::LowConfidence, Strategy::Margin, Strategy::Entropy] {
            assert!(
                score(strategy, &sure, 9, 0.0) > score(strategy, &unsure, 1, 0.0),
                "{strategy:?}"
            );
        }
        assert!(
            score(Strategy::LeftToRight, &sure, 1, 0.0)
                > score(Strategy::LeftToRight, &sure, 2, 0.0)
        );
        assert_eq!(score(Strategy::Random, &sure, 1, 0.25), 0.25);
    }

    #[test]
    fn margin_differs_from_probability() {
        // Same top probability, different runner-up: margin tells them apart.
        let a = Distribution::from_logits(&[2.0, 1.9, -9.0, -9.0], 0);
        let b = Distribution::from_logits(&[2.0, 0.0, 0.0, 0.0], 0);
        assert!(score(Strategy::Margin, &b, 0, 0.0) > score(Strategy::Margin, &a, 0, 0.0));
    }
}
