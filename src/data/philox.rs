//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
//! counter-based generator. Output block `n` is a pure function of (key, counter n), so episode `i`
//! draws from its own stream whatever thread computes it and in whatever order.

use sha2::{Digest, Sha256};

const M0: u64 = 0xD251_1F53;
const M1: u64 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The Philox4x32-10 block function.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// A stream of random numbers for one (key, stream id): block `n` is `philox(stream, n)`.
#[derive(Debug, Clone)]
pub struct CounterRng {
    key: [u32; 2],
    stream: u64,
    block: u64,
    buffer: [u32; 4],
    used: usize,
}

impl CounterRng {
    /// A key from any text (hashed with SHA-256), e.g. `"mini-imagenet|test|5w1s15q|1"`.
    pub fn key_from(text: &str) -> [u32; 2] {
        let d = Sha256::digest(text.as_bytes());
        [
            u32::from_le_bytes(d[0..4].try_into().unwrap()),
            u32::from_le_bytes(d[4..8].try_into().unwrap()),
        ]
    }

    pub fn new(key: [u32; 2], stream: u64) -> Self {
        Self {
            key,
            stream,
            block: 0,
            buffer: [0; 4],
            used: 4,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            let counter = [
                self.block as u32,
                (self.block >> 32) as u32,
                self.stream as u32,
                (self.stream >> 32) as u32,
            ];
            self.buffer = philox4x32(counter, self.key);
            self.block += 1;
            self.used = 0;
        }
        self.used += 1;
        self.buffer[self.used - 1]
    }

    /// Uniform in `0..n` without modulo bias (rejection sampling).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "below(0)");
        let zone = u32::MAX - (u32::MAX % n);
        loop {
            let v = self.next_u32();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// `k` distinct indices from `0..n`, in draw order (a partial Fisher–Yates shuffle).
    pub fn choose(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "cannot choose {k} of {n}");
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below((n - i) as u32) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_known_answer_vectors() {
        // Random123's kat_vectors for philox4x32_10 (the reference implementation's test file).
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn streams_are_pure_functions_of_key_and_stream() {
        let key = CounterRng::key_from("x");
        let a: Vec<u32> = (0..10)
            .map({
                let mut r = CounterRng::new(key, 7);
                move |_| r.next_u32()
            })
            .collect();
        let b: Vec<u32> = (0..10)
            .map({
                let mut r = CounterRng::new(key, 7);
                move |_| r.next_u32()
            })
            .collect();
        let c: Vec<u32> = (0..10)
            .map({
                let mut r = CounterRng::new(key, 8);
                move |_| r.next_u32()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn choose_gives_distinct_in_range_and_roughly_uniform() {
        let mut r = CounterRng::new(CounterRng::key_from("u"), 0);
        let mut counts = [0usize; 10];
        for _ in 0..2000 {
            let picks = r.choose(10, 3);
            let mut sorted = picks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
            for p in picks {
                counts[p] += 1;
            }
        }
        // each index is expected 600 times; 5 standard deviations (~5*sqrt(600*0.7)) is ~100
        assert!(
            counts.iter().all(|&c| (500..700).contains(&c)),
            "{counts:?}"
        );
    }
}
