//! How many masked positions to commit at each step of a block.

use serde::{Deserialize, Serialize};

/// Fixed commit-count rules (a step budget per block). Confidence-threshold and factor decoding
/// are dynamic and live in [`super::Commit`] selection instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// LLaDA `get_num_transfer_tokens`: the block's masks split evenly over its steps, the
    /// remainder going to the first steps.
    Uniform,
    /// Dream's rule: k = floor(m (1 - s/t)) with t, s consecutive points of linspace(1, eps, steps+1)
    /// and m the masks left; the last step commits everything.
    Timestep,
    /// Linear masking schedule: after step j of S, M (1 - j/S) masks remain (rounded down).
    Linear,
    /// MaskGIT's cosine schedule: after step j of S, M cos(pi/2 j/S) masks remain (rounded down).
    Cosine,
}

impl Schedule {
    pub const ALL: [Schedule; 4] = [
        Schedule::Uniform,
        Schedule::Timestep,
        Schedule::Linear,
        Schedule::Cosine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Uniform => "uniform",
            Schedule::Timestep => "timestep",
            Schedule::Linear => "linear",
            Schedule::Cosine => "cosine",
        }
    }

    /// Number of tokens to commit at step `step` (0-based) of `steps`, given the block held
    /// `initial` masks when it started and holds `remaining` now.
    pub fn count(
        self,
        step: usize,
        steps: usize,
        initial: usize,
        remaining: usize,
        eps: f64,
    ) -> usize {
        if steps == 0 || remaining == 0 {
            return 0;
        }
        let last = step + 1 >= steps;
        let k = match self {
            // LLaDA's counts are fixed when the block starts: its last step commits its share,
            // not whatever is left (a position whose best guess was the mask token stays masked).
            Schedule::Uniform => {
                let base = initial / steps;
                base + usize::from(step < initial % steps)
            }
            _ if last => remaining,
            Schedule::Timestep => {
                let t = linspace_f32(1.0, eps as f32, steps + 1, step);
                let s = linspace_f32(1.0, eps as f32, steps + 1, step + 1);
                (remaining as f32 * (1.0 - s / t)) as usize
            }
            Schedule::Linear => {
                let left = (initial as f64 * (1.0 - (step + 1) as f64 / steps as f64)).floor();
                remaining.saturating_sub(left as usize)
            }
            Schedule::Cosine => {
                let ratio = (std::f64::consts::FRAC_PI_2 * (step + 1) as f64 / steps as f64).cos();
                remaining.saturating_sub((initial as f64 * ratio).floor() as usize)
            }
        };
        k.min(remaining)
    }
}

/// Element `i` of `torch.linspace(start, end, n)` in f32, computed the way torch's CPU kernel does
/// (from the start for the first half, from the end for the second, each with one FMA).
pub(super) fn linspace_f32(start: f32, end: f32, n: usize, i: usize) -> f32 {
    if n == 1 {
        return start;
    }
    // Each element is one fused multiply-add (a single rounding), as in torch's kernel; the
    // unfused formula differs in the last bit for most n.
    let step = (end - start) / (n - 1) as f32;
    if i < n / 2 {
        step.mul_add(i as f32, start)
    } else {
        (-step).mul_add((n - 1 - i) as f32, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(schedule: Schedule, steps: usize, masks: usize) -> Vec<usize> {
        let mut remaining = masks;
        (0..steps)
            .map(|j| {
                let k = schedule.count(j, steps, masks, remaining, 1e-3);
                remaining -= k;
                k
            })
            .collect()
    }

    #[test]
    fn uniform_gives_remainder_to_first_steps() {
        assert_eq!(counts(Schedule::Uniform, 5, 12), vec![3, 3, 2, 2, 2]);
        assert_eq!(counts(Schedule::Uniform, 4, 8), vec![2, 2, 2, 2]);
        assert_eq!(counts(Schedule::Uniform, 6, 3), vec![1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn timestep_follows_dream() {
        // steps 4, eps 1e-3: t = [1, .75025, .5005, .25075, .001]; k = floor(m (1 - s/t)).
        let c = counts(Schedule::Timestep, 4, 16);
        assert_eq!(c, vec![3, 4, 4, 5]);
        assert_eq!(c.iter().sum::<usize>(), 16);
    }

    #[test]
    fn linear_and_cosine_empty_the_block() {
        let lin = counts(Schedule::Linear, 4, 10);
        assert_eq!(lin, vec![3, 2, 3, 2]);
        let cos = counts(Schedule::Cosine, 4, 16);
        // remaining after each step: floor(16 cos(pi/8 j)) = 14, 11, 6, 0
        assert_eq!(cos, vec![2, 3, 5, 6]);
    }

    #[test]
    fn every_schedule_commits_all_masks() {
        for schedule in Schedule::ALL {
            for steps in 1..9 {
                for masks in 0..20 {
                    let total: usize = counts(schedule, steps, masks).iter().sum();
                    assert_eq!(total, masks, "{schedule:?} steps={steps} masks={masks}");
                }
            }
        }
    }
}
