//! Token proposal: which token a masked position would become if committed now.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::strategy::Distribution;

/// How tokens are proposed from a logits row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Proposal {
    /// argmax of the logits (temperature 0).
    Argmax,
    /// LLaDA's Gumbel-max: argmax of exp(l) / (-ln u)^T in f64 (`add_gumbel_noise`). Scores come
    /// from the softmax of the raw logits.
    Gumbel { temperature: f64 },
    /// Dream's `sample_tokens`: logits / T, then top-p, then top-k filtering, then a categorical
    /// draw (argmax at T = 0). Scores come from the filtered distribution.
    Categorical {
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
    },
}

impl Proposal {
    /// Proposes a token for one row and summarises the distribution that scores it; the `hidden`
    /// ids are taken out of that distribution (not out of the proposal).
    ///
    /// `never` is never proposed, whatever its logit: the sampler passes the mask id when it
    /// finishes the masks a run's schedule left (the references propose the mask token like any
    /// other, so during the schedule `never` is `None`). The scores still see it.
    pub fn propose(
        &self,
        logits: &[f32],
        rng: &mut ChaCha8Rng,
        hidden: &[u32],
        never: Option<u32>,
    ) -> (u32, Distribution) {
        let never = never.map_or(usize::MAX, |id| id as usize);
        let scored = |logits: &[f32], token: usize| {
            if hidden.is_empty() {
                return Distribution::from_logits(logits, token);
            }
            let mut masked = logits.to_vec();
            for &id in hidden {
                if let Some(l) = masked.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
            Distribution::from_logits(&masked, token)
        };
        match *self {
            Proposal::Argmax => {
                let token = argmax_except(logits, never);
                (token as u32, scored(logits, token))
            }
            Proposal::Gumbel { temperature } => {
                let mut best = (usize::MAX, f64::NEG_INFINITY);
                for (i, &l) in logits.iter().enumerate() {
                    // Drawn for every entry, so the stream does not depend on `never`.
                    let u: f64 = rng.random();
                    let noisy = (l as f64).exp() / (-u.ln()).powf(temperature);
                    if i != never && (noisy > best.1 || best.0 == usize::MAX) {
                        best = (i, noisy);
                    }
                }
                let token = if best.0 == usize::MAX { 0 } else { best.0 };
                (token as u32, scored(logits, token))
            }
            Proposal::Categorical {
                temperature,
                top_k,
                top_p,
            } => {
                let filtered = filter(logits, temperature, top_k, top_p);
                let token = if temperature > 0.0 {
                    let mut allowed = filtered.clone();
                    if let Some(l) = allowed.get_mut(never) {
                        *l = f32::NEG_INFINITY;
                    }
                    sample_categorical(&allowed, rng)
                } else {
                    argmax_except(&filtered, never)
                };
                (token as u32, scored(&filtered, token))
            }
        }
    }
}

/// Index of the first maximum (torch.argmax's tie rule).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Dream's temperature, top-p and top-k filtering; removed entries become f32::MIN as in Dream.
fn filter(logits: &[f32], temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Vec<f32> {
    let mut out: Vec<f32> = if temperature > 0.0 {
        logits.iter().map(|&l| l / temperature as f32).collect()
    } else {
        logits.to_vec()
    };
    if let Some(p) = top_p.filter(|&p| p < 1.0) {
        let mut order: Vec<usize> = (0..out.len()).collect();
        order.sort_by(|&a, &b| out[b].total_cmp(&out[a]).then(a.cmp(&b)));
        let max = out[order[0]];
        let total: f64 = out.iter().map(|&l| ((l - max) as f64).exp()).sum();
        // Keep the smallest prefix whose mass reaches p (the first token always stays).
        let mut cumulative = 0.0;
        let mut removing = false;
        for &i in &order {
            if removing {
                out[i] = f32::MIN;
                continue;
            }
            cumulative += ((out[i] - max) as f64).exp() / total;
            removing = cumulative > p;
        }
    }
    if let Some(k) = top_k.filter(|&k| k < out.len()) {
        let mut sorted = out.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k.max(1) - 1];
        for l in out.iter_mut() {
            if *l < kth {
                *l = f32::MIN;
            }
        }
    }
    out
}

/// [`argmax`] over every index but `skip` (the first other index when all are equal).
pub(super) fn argmax_except(values: &[f32], skip: usize) -> usize {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if i != skip && best.is_none_or(|b| v > values[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

fn sample_categorical(logits: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if target < *w {
            return i;
        }
        target -= w;
    }
    argmax(logits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_k_and_top_p_filter_like_dream() {
        let logits = [4.0f32, 3.0, 2.0, 1.0];
        let k = filter(&logits, 0.0, Some(2), None);
        assert_eq!(k, vec![4.0, 3.0, f32::MIN, f32::MIN]);
        // softmax = [.644, .237, .087, .032]: with p = 0.7 the first two are kept (the token that
        // crosses p stays, as in Dream's shifted mask).
        let p = filter(&logits, 0.0, None, Some(0.7));
        assert_eq!(p, vec![4.0, 3.0, f32::MIN, f32::MIN]);
        let p = filter(&logits, 0.0, None, Some(0.5));
        assert_eq!(p, vec![4.0, f32::MIN, f32::MIN, f32::MIN]);
    }

    #[test]
    fn gumbel_at_low_temperature_is_argmax_and_is_seeded() {
        let logits = [0.0f32, 5.0, 1.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let g = Proposal::Gumbel { temperature: 1e-6 };
        assert_eq!(g.propose(&logits, &mut rng, &[], None).0, 1);
        let flat = [0.0f32; 50];
        let hot = Proposal::Gumbel { temperature: 1.0 };
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..8)
                .map(|_| hot.propose(&flat, &mut rng, &[], None).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn categorical_samples_only_kept_tokens() {
        let logits = [3.0f32, 2.9, 2.8, -1.0];
        let c = Proposal::Categorical {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let (t, d) = c.propose(&logits, &mut rng, &[], None);
            assert!(t < 2);
            assert!(d.proposed > 0.45);
        }
    }

    /// A token excluded with `never` (the mask id, when finishing) is not proposed, even when the
    /// model likes it best, by any proposal.
    #[test]
    fn the_mask_is_never_proposed() {
        let logits = [1.0f32, 9.0, 2.0, 0.5];
        let proposals = [
            Proposal::Argmax,
            Proposal::Gumbel { temperature: 1.0 },
            Proposal::Gumbel { temperature: 50.0 },
            Proposal::Categorical {
                temperature: 0.0,
                top_k: None,
                top_p: None,
            },
            Proposal::Categorical {
                temperature: 1.5,
                top_k: Some(2),
                top_p: None,
            },
            Proposal::Categorical {
                temperature: 1.5,
                top_k: None,
                top_p: Some(0.5),
            },
        ];
        for p in proposals {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            for _ in 0..300 {
                let (token, _) = p.propose(&logits, &mut rng, &[], Some(1));
                assert_ne!(token, 1, "{p:?}");
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            Proposal::Argmax.propose(&logits, &mut rng, &[], Some(1)).0,
            2
        );
    }

    #[test]
    fn hidden_tokens_leave_the_scores_not_the_proposal() {
        let logits = [1.0f32, 4.0, 2.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (token, plain) = Proposal::Argmax.propose(&logits, &mut rng, &[], None);
        let (same, hidden) = Proposal::Argmax.propose(&logits, &mut rng, &[1], None);
        assert_eq!((token, same), (1, 1));
        assert!(plain.proposed > 0.8);
        assert_eq!(hidden.proposed, 0.0);
        // The rest renormalise without the hidden token: e^2 / (e^1 + e^2).
        let expected = 2f32.exp() / (1f32.exp() + 2f32.exp());
        assert!((hidden.top1 - expected).abs() < 1e-6, "{}", hidden.top1);
    }
}
