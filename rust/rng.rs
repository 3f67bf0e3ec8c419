//! Random streams: per-run seeding, a scalar generator for indices, and a lane-parallel normal
//! sampler for the noisy quadratic model and the potentials.
//!
//! # Design notes
//!
//! * **Streams depend on (sweep seed, run index) only.** [`run_key`] hashes the two with
//!   `SplitMix64` finalizers; every generator of a run is seeded from that key and a fixed
//!   purpose tag. No generator is shared between runs or threads, so a table is the same with
//!   one thread or many, and with any chunking of the plan.
//! * **Common random numbers.** A plan may ask that runs differing only in optimizer, schedule
//!   or learning rate share their noise and minibatch indices (a paired comparison then sees
//!   only the difference the change makes). [`crn_key`] keys such a run by (sweep seed,
//!   problem index, base batch size, replicate id) instead of its run index: still a function
//!   of the run's identity in the plan, so still independent of threads and chunking. It is
//!   hashed under its own tag, so no common-random-numbers key is the run key of another plan
//!   by construction of the inputs (they may collide only as any two 64-bit hashes do).
//! * **The normal sampler is the whole cost of an NQM step.** A scalar ziggurat sits near
//!   3 ns per coordinate-step; the goal is under 1.5 ns. [`NormalStream`] runs [`LANES`]
//!   independent xoshiro128++ generators as a structure of arrays (one `[u32; LANES]` per
//!   state word), so that their update is a plain loop the compiler turns into SIMD, and turns
//!   pairs of uniforms into pairs of normals with a branch-free Box–Muller transform in `f32`:
//!   `ln` from the exponent plus an `atanh` series (truncation error below 4e-10 relative) and
//!   the angle as a uniform point on the circle, made from a Taylor `(cos, sin)` on
//!   [-π/4, π/4) rotated into a uniformly chosen quadrant (error below 2e-9). Nothing in the
//!   loop branches, so no lane waits for another; the ziggurat's rejection branch is what kept
//!   it scalar. The kernel is compiled per SIMD level and picked at run time; all give bitwise
//!   identical numbers because no floating-point contraction is allowed.
//! * **Tails.** The radius uses 31 random bits, `u1 ∈ (2^-32, 1]`, so `|z| ≤ 6.66`: the
//!   sampler omits a mass of 2.7e-11 beyond 6.66σ, far below anything a sweep can resolve.
//! * **`f32` streams have a kernel of their own** ([`Normal`]). The `f64` stream must stay the
//!   one every existing `f64` sweep drew (its numbers are pinned by `rng::tests` and
//!   `real::tests`), so the `f32` kernel could change what the `f64` one cannot: 16 lanes (one
//!   AVX-512 register of `u32`), no widening to `f64`, one fused pass from random bits to the
//!   output, one `atanh` term fewer (error 3e-8 against 7e-10), `sin` and `cos` of degrees 7
//!   and 8 from Chebyshev fits instead of 9 and 10 from Taylor, all in explicit fused
//!   multiply-adds (`mul_add`, correctly rounded wherever it runs, so every level still gives
//!   the same bits; the AVX2 level requires FMA, the portable build calls the C library's
//!   `fmaf`). Measured with `cargo bench --bench core -- sampler` (interleaved rounds, the
//!   development machine shared with other work): 0.52 ns per `f32` normal against 1.02 ns
//!   per `f64` one, 2.0-2.3x over repeated runs; the FMA polynomials gave about 15 % of that.
//!   Tried and dropped: a division-free `ln` (a degree-9 polynomial in `m − 1`) measured the
//!   same as the division; the division is cheap beside the square root.
//! * **The `f32` kernel draws and transforms sixteen pairs in one loop body** (the radius bits
//!   of the lanes, then their angle bits, as the staged loops took them): no bit arrays to
//!   zero, store and reload, and the generator's integer work fills the wait on the square
//!   root. Same process, interleaved, min of 15 rounds: 0.48 against 0.57 ns per normal one
//!   block at a time (0.43 against 0.49 four at a time); a float32 NQM run at d = 100 (loss
//!   checked every step) took 14-16 % less CPU time. The same fusion made the `f64` kernel
//!   slower (1.02 against 0.96 ns per normal with eight lanes a body, 1.45 with sixteen
//!   pairs from two draws): it keeps its staged loops. Not tried: a
//!   vectorized ziggurat (its tables need gathers, slow on this AMD EPYC, and its rejections a
//!   scalar fallback); Box–Muller at about two cycles per normal is the sampler's floor here.

use crate::simd::{self, Level};

/// Independent generator lanes of an `f64` [`NormalStream`] (8 × 32-bit words fill one AVX2
/// register).
pub const LANES: usize = 8;
/// Independent generator lanes of an `f32` [`NormalStream`] (16 × 32-bit words fill one
/// AVX-512 register).
pub const WIDE_LANES: usize = 16;
/// Box–Muller pairs made per block.
const PAIRS: usize = 128;
/// Normals produced per block: the cosine halves of the pairs, then the sine halves.
pub const BLOCK: usize = 2 * PAIRS;

/// One `SplitMix64` step: advances `state` and returns a well-mixed 64-bit value.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of a run's random streams: a hash of the sweep seed and the run's index in the plan.
#[must_use]
pub fn run_key(sweep_seed: u64, run_index: u64) -> u64 {
    let mut s = sweep_seed;
    let a = splitmix64(&mut s);
    let mut t = a ^ run_index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    splitmix64(&mut t)
}

/// Mixes the sweep seed of a common-random-numbers key, so that it is not a [`run_key`].
const CRN_TAG: u64 = 0x6A09_E667_F3BC_C909;

/// The key of a run under common random numbers: a hash of the sweep seed, the problem index,
/// the base batch size and the replicate id, so that runs differing only in optimizer, schedule
/// or learning rate share their random streams.
#[must_use]
pub fn crn_key(sweep_seed: u64, problem: u64, batch_size: u64, replicate: u64) -> u64 {
    let mut s = sweep_seed ^ CRN_TAG;
    let mut h = splitmix64(&mut s);
    for (part, mult) in [
        (problem, 0xD1B5_4A32_D192_ED03u64),
        (batch_size, 0xCA5A_8263_9512_1157),
        (replicate, 0x8CB9_2BA7_2F3D_8DD7),
    ] {
        let mut t = h ^ part.wrapping_mul(mult);
        h = splitmix64(&mut t);
    }
    h
}

/// Purpose tags, so that a run's index stream and noise stream never overlap.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Minibatch indices and permutations.
    Indices = 1,
    /// Gaussian gradient noise.
    Noise = 2,
}

fn purpose_seed(key: u64, purpose: Purpose) -> u64 {
    let mut s = key ^ (purpose as u64).wrapping_mul(0xA076_1D64_78BD_642F);
    splitmix64(&mut s)
}

/// xoshiro256++ (Blackman & Vigna 2019): the scalar generator for indices and uniforms.
#[derive(Debug, Clone)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// A generator seeded from a run key and a purpose.
    #[must_use]
    pub fn new(key: u64, purpose: Purpose) -> Self {
        let mut sm = purpose_seed(key, purpose);
        Self {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform integer in `0..n` (Lemire's multiply-and-reject, unbiased); `n >= 1`.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        let n64 = u64::from(n);
        let mut m = (self.next_u64() >> 32) * n64;
        if (m as u32) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u32) < threshold {
                m = (self.next_u64() >> 32) * n64;
            }
        }
        (m >> 32) as u32
    }

    /// A uniform double in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A float type [`NormalStream`] fills, with the sampler kernel that makes it.
///
/// `f64` keeps the core's original stream: [`LANES`] generator lanes and the kernel of
/// `fill_blocks_double`, widened from `f32`. `f32` has a kernel of its own
/// (`fill_blocks_single`): [`WIDE_LANES`] lanes, no widening, shorter polynomials. The two
/// types therefore draw different (independent) normals from the same key.
pub trait Normal: Copy + Default + std::fmt::Debug + Send + Sync + 'static {
    /// The xoshiro128++ state of every lane, one array per state word.
    type Lanes: Copy + std::fmt::Debug + PartialEq + Send + Sync;
    /// The lanes seeded from a run key (purpose [`Purpose::Noise`]).
    fn seed(key: u64) -> Self::Lanes;
    /// The kernel compiled for the build's baseline (SSE2 on `x86_64`).
    fn fill_portable(lanes: &mut Self::Lanes, out: &mut [Self]);
    /// The kernel compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`Level::Avx2`]).
    #[cfg(target_arch = "x86_64")]
    unsafe fn fill_avx2(lanes: &mut Self::Lanes, out: &mut [Self]);
    /// The kernel compiled for AVX-512.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW, DQ and VL ([`Level::Avx512`]).
    #[cfg(target_arch = "x86_64")]
    unsafe fn fill_avx512(lanes: &mut Self::Lanes, out: &mut [Self]);

    /// Fill `out` (a multiple of [`BLOCK`] long) with normals on the kernel compiled for
    /// `level` (the portable one where the CPU lacks it).
    #[inline]
    fn fill_blocks_at(level: Level, lanes: &mut Self::Lanes, out: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            if level >= Level::Avx512 && Level::Avx512.supported() {
                // SAFETY: the CPU supports AVX-512 F/BW/DQ/VL, checked just above.
                unsafe { Self::fill_avx512(lanes, out) };
                return;
            }
            if level >= Level::Avx2 && Level::Avx2.supported() {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                unsafe { Self::fill_avx2(lanes, out) };
                return;
            }
        }
        let _ = level;
        Self::fill_portable(lanes, out);
    }
}

/// Lanes `0..L` seeded in order from the splitmix sequence of the key: an `f64` stream's eight
/// lanes are the first eight of an `f32` stream's sixteen.
fn seed_lanes<const L: usize>(key: u64) -> [[u32; L]; 4] {
    let mut sm = purpose_seed(key, Purpose::Noise);
    let mut state = [[0u32; L]; 4];
    for lane in 0..L {
        let (a, b) = (splitmix64(&mut sm), splitmix64(&mut sm));
        let words = [a as u32, (a >> 32) as u32, b as u32, ((b >> 32) as u32) | 1]; // never all zero
        for (word, value) in state.iter_mut().zip(words) {
            word[lane] = value;
        }
    }
    state
}

impl Normal for f64 {
    type Lanes = [[u32; LANES]; 4];

    fn seed(key: u64) -> Self::Lanes {
        seed_lanes(key)
    }

    fn fill_portable(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_double(lanes, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_avx2(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_double(lanes, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn fill_avx512(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_double(lanes, out);
    }
}

impl Normal for f32 {
    type Lanes = [[u32; WIDE_LANES]; 4];

    fn seed(key: u64) -> Self::Lanes {
        seed_lanes(key)
    }

    fn fill_portable(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_single(lanes, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fill_avx2(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_single(lanes, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn fill_avx512(lanes: &mut Self::Lanes, out: &mut [Self]) {
        fill_blocks_single(lanes, out);
    }
}

/// The most normals [`NormalStream::next_slice`] lends from the stream's own buffer.
pub const MAX_LENT: usize = BLOCK;
/// The most normals a [`NormalStream`] makes ahead at a time (four blocks; it starts at one
/// block and doubles, so a short run makes no more than it uses: four blocks up front and
/// their buffer made a 20-step run at d = 4 about a third slower).
const AHEAD: usize = 4 * BLOCK;

/// Gaussian numbers from independent xoshiro128++ lanes, [`BLOCK`] at a time, in the run's
/// float type ([`Normal`]: `f64` by default).
#[derive(Debug, Clone)]
pub struct NormalStream<T: Normal = f64> {
    state: T::Lanes,
    /// Normals made ahead, `buffer[start..end]` not yet used; grown as needed, up to
    /// [`MAX_LENT`] + [`AHEAD`] long (fewer than [`MAX_LENT`] left over and the [`AHEAD`] made
    /// after them).
    buffer: Vec<T>,
    start: usize,
    end: usize,
    /// What the next refill of [`NormalStream::next_slice`] makes.
    ahead: usize,
}

impl<T: Normal> NormalStream<T> {
    /// A stream seeded from a run key (purpose [`Purpose::Noise`]).
    #[must_use]
    pub fn new(key: u64) -> Self {
        Self {
            state: T::seed(key),
            buffer: Vec::new(),
            start: 0,
            end: 0,
            ahead: BLOCK,
        }
    }

    /// Move the normals left over (fewer than [`MAX_LENT`]) to the front of the buffer and make
    /// `made` more after them (whole blocks, at most [`AHEAD`]): the stream's order is unchanged.
    #[inline(never)]
    fn refill(&mut self, made: usize) {
        let left = self.end - self.start;
        if self.buffer.len() < left + made {
            self.buffer.resize(left + made, T::default());
        }
        self.buffer.copy_within(self.start..self.end, 0);
        T::fill_blocks_at(
            simd::level(),
            &mut self.state,
            &mut self.buffer[left..left + made],
        );
        (self.start, self.end) = (0, left + made);
    }

    /// Fill `out` with independent standard normals.
    pub fn fill(&mut self, out: &mut [T]) {
        // One block copy of what the buffer holds (an element-wise loop here was 60 % of an NQM
        // step at d = 100, when every normal passed through the buffer).
        let filled = (self.end - self.start).min(out.len());
        out[..filled].copy_from_slice(&self.buffer[self.start..self.start + filled]);
        self.start += filled;
        let rest = &mut out[filled..];
        let whole = rest.len() / BLOCK * BLOCK;
        let (body, tail) = rest.split_at_mut(whole);
        T::fill_blocks_at(simd::level(), &mut self.state, body);
        if !tail.is_empty() {
            // the buffer is empty here: the tail is the start of the next block (one, so that a
            // long fill copies fewer than a block of normals: four cost a float64 NQM step at
            // d = 1000 11-15 %)
            self.refill(BLOCK);
            tail.copy_from_slice(&self.buffer[..tail.len()]);
            self.start = tail.len();
        }
    }

    /// The next `scratch.len()` normals of the stream (the ones [`NormalStream::fill`] would
    /// write): read in place from the stream's buffer when there are at most [`MAX_LENT`],
    /// else written to `scratch`.
    ///
    /// Design note: an NQM step at d = 100 used to copy each of its normals out of a one-block
    /// buffer (`memmove` was 5 % of a run in `f32`); lent in place, a step copies none but the
    /// fewer than `d` left over at each refill, once every `AHEAD / d` steps, and the kernel
    /// runs four blocks a call. Interleaved processes, min of 7, loss checked every step: 5-9 %
    /// less CPU time for a float32 run, 18-20 % for a float64 one.
    #[inline(always)]
    pub fn next_slice<'a>(&'a mut self, scratch: &'a mut [T]) -> &'a [T] {
        let n = scratch.len();
        if n > MAX_LENT {
            self.fill(scratch);
            return scratch;
        }
        if self.end - self.start < n {
            self.refill(self.ahead);
            self.ahead = (2 * self.ahead).min(AHEAD);
        }
        let start = self.start;
        self.start += n;
        &self.buffer[start..start + n]
    }

    /// One standard normal.
    pub fn next_normal(&mut self) -> T {
        self.next_slice(&mut [T::default()])[0]
    }
}

/// The `f64` kernel: `f32` Box–Muller pairs from [`LANES`] lanes, widened.
#[inline(always)]
fn fill_blocks_double(state: &mut [[u32; LANES]; 4], out: &mut [f64]) {
    let (mut radius_bits, mut angle_bits) = ([0u32; PAIRS], [0u32; PAIRS]);
    let (mut radius, mut cos, mut sin) = ([0.0f32; PAIRS], [0.0f32; PAIRS], [0.0f32; PAIRS]);
    for block in out.chunks_exact_mut(BLOCK) {
        // One plain loop per stage over a whole block: each becomes a run of full-width SIMD ops.
        for k in (0..PAIRS).step_by(LANES) {
            radius_bits[k..k + LANES].copy_from_slice(&next_lanes(state));
            angle_bits[k..k + LANES].copy_from_slice(&next_lanes(state));
        }
        for (r, &bits) in radius.iter_mut().zip(&radius_bits) {
            *r = gaussian_radius(bits);
        }
        for ((c, s), &bits) in cos.iter_mut().zip(sin.iter_mut()).zip(&angle_bits) {
            (*c, *s) = unit_circle(bits);
        }
        let (first, second) = block.split_at_mut(PAIRS);
        for (((z1, z2), r), (c, s)) in first
            .iter_mut()
            .zip(second.iter_mut())
            .zip(&radius)
            .zip(cos.iter().zip(&sin))
        {
            *z1 = f64::from(r * c);
            *z2 = f64::from(r * s);
        }
    }
}

/// The `f32` kernel: Box–Muller pairs from [`WIDE_LANES`] lanes with the shorter polynomials
/// of [`radius_single`] and [`unit_circle_single`], written as they are made.
#[inline(always)]
fn fill_blocks_single(state: &mut [[u32; WIDE_LANES]; 4], out: &mut [f32]) {
    for block in out.chunks_exact_mut(BLOCK) {
        let (first, second) = block.split_at_mut(PAIRS);
        // One draw of the lanes for the radii and one for the angles of sixteen pairs, turned
        // into their normals at once: the generator's integer work overlaps the transform's
        // square root and division, and no bit arrays are zeroed, stored and reloaded.
        for (z1, z2) in first
            .chunks_exact_mut(WIDE_LANES)
            .zip(second.chunks_exact_mut(WIDE_LANES))
        {
            let radius_bits = next_lanes(state);
            let angle_bits = next_lanes(state);
            for (k, (z1, z2)) in z1.iter_mut().zip(z2.iter_mut()).enumerate() {
                let radius = radius_single(radius_bits[k]);
                let (c, s) = unit_circle_single(angle_bits[k]);
                *z1 = radius * c;
                *z2 = radius * s;
            }
        }
    }
}

/// One xoshiro128++ step (Blackman & Vigna 2019) in every lane.
#[inline(always)]
fn next_lanes<const L: usize>(s: &mut [[u32; L]; 4]) -> [u32; L] {
    let mut out = [0u32; L];
    for lane in 0..L {
        out[lane] = s[0][lane]
            .wrapping_add(s[3][lane])
            .rotate_left(7)
            .wrapping_add(s[0][lane]);
        let t = s[1][lane] << 9;
        s[2][lane] ^= s[0][lane];
        s[3][lane] ^= s[1][lane];
        s[1][lane] ^= s[2][lane];
        s[0][lane] ^= s[3][lane];
        s[2][lane] ^= t;
        s[3][lane] = s[3][lane].rotate_left(11);
    }
    out
}

/// The uniform `u1 ∈ (2^-32, 1]` of a Box–Muller radius: 31 random bits through the signed
/// conversion SIMD units have.
#[inline(always)]
fn radius_uniform(bits: u32) -> f32 {
    ((bits >> 1) as i32 as f32 + 0.5) * (1.0 / 2_147_483_648.0)
}

/// The Box–Muller radius `sqrt(-2 ln u1)` (Box & Muller 1958) from 32 random bits.
#[inline(always)]
fn gaussian_radius(bits: u32) -> f32 {
    (-2.0 * ln_unit(radius_uniform(bits))).sqrt()
}

/// [`gaussian_radius`] with one `atanh` term fewer ([`ln_unit_single`]), for `f32` streams.
#[inline(always)]
fn radius_single(bits: u32) -> f32 {
    (-2.0 * ln_unit_single(radius_uniform(bits))).sqrt()
}

/// The quadrant (top two bits) and the offset `φ ∈ [-π/4, π/4)` within it (24 more bits) of a
/// uniform angle.
#[inline(always)]
fn quadrant_and_offset(bits: u32) -> (u32, f32) {
    let quadrant = bits >> 30;
    let offset = ((bits >> 6) & 0x00FF_FFFF) as i32 as f32 * (1.0 / 16_777_216.0);
    (quadrant, (offset - 0.5) * std::f32::consts::FRAC_PI_2)
}

/// `(c, s)` rotated by `quadrant`·90° with a swap and two sign flips: selects, not branches.
#[inline(always)]
fn rotate_by_quadrant(quadrant: u32, (c, s): (f32, f32)) -> (f32, f32) {
    let swap = quadrant & 1 != 0;
    let (a, b) = if swap { (s, c) } else { (c, s) };
    let x = f32::from_bits(a.to_bits() ^ (((quadrant ^ (quadrant >> 1)) & 1) << 31));
    let y = f32::from_bits(b.to_bits() ^ ((quadrant >> 1) << 31));
    (x, y)
}

/// A uniform point `(cos θ, sin θ)` on the unit circle from 32 random bits.
#[inline(always)]
fn unit_circle(bits: u32) -> (f32, f32) {
    let (quadrant, phi) = quadrant_and_offset(bits);
    rotate_by_quadrant(quadrant, cos_sin_small(phi))
}

/// [`unit_circle`] with the shorter polynomials of [`cos_sin_single`], for `f32` streams.
#[inline(always)]
fn unit_circle_single(bits: u32) -> (f32, f32) {
    let (quadrant, phi) = quadrant_and_offset(bits);
    rotate_by_quadrant(quadrant, cos_sin_single(phi))
}

/// `(e, m)` with `u = 2^e m` and `m ∈ [√½, √2)`, for `u` in `(0, 1]`, in float arithmetic only,
/// so the lanes stay in full-width registers.
#[inline(always)]
fn exponent_and_mantissa(u: f32) -> (f32, f32) {
    let bits = u.to_bits();
    let exponent = ((bits >> 23) as i32) as f32 - 127.0;
    let mantissa = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000); // in [1, 2)
                                                                       // Centre the mantissa on 1 so the series converges fast: m in [√½, √2).
    let big = mantissa > std::f32::consts::SQRT_2;
    let m = if big { mantissa * 0.5 } else { mantissa };
    let e = if big { exponent + 1.0 } else { exponent };
    (e, m)
}

/// `ln(u)` for `u` in `(0, 1]`: exponent times ln 2 plus `2·atanh((m−1)/(m+1))` on the mantissa.
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    let (e, m) = exponent_and_mantissa(u);
    let s = (m - 1.0) / (m + 1.0); // |s| <= 0.1716
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    e * std::f32::consts::LN_2 + series
}

/// [`ln_unit`] with four `atanh` terms: truncation error below `2|s|⁹/9 ≤ 3e-8` (`|s| ≤ 0.1716`),
/// half an `f32` ulp of 1.
#[inline(always)]
fn ln_unit_single(u: f32) -> f32 {
    let (e, m) = exponent_and_mantissa(u);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = s2.mul_add(s2.mul_add(s2.mul_add(2.0 / 7.0, 2.0 / 5.0), 2.0 / 3.0), 2.0);
    e.mul_add(std::f32::consts::LN_2, s * poly)
}

/// `(cos φ, sin φ)` for `|φ| <= π/4` by Taylor polynomials (errors below 2e-9).
#[inline(always)]
fn cos_sin_small(phi: f32) -> (f32, f32) {
    // Horner forms of the Taylor series; constants are the reciprocals 1/(k(k+1)), so no division.
    let p2 = phi * phi;
    let sin = phi
        * (1.0
            - p2 * (1.0 / 6.0)
                * (1.0
                    - p2 * (1.0 / 20.0) * (1.0 - p2 * (1.0 / 42.0) * (1.0 - p2 * (1.0 / 72.0)))));
    let cos = 1.0
        - p2 * 0.5
            * (1.0
                - p2 * (1.0 / 12.0)
                    * (1.0
                        - p2 * (1.0 / 30.0)
                            * (1.0 - p2 * (1.0 / 56.0) * (1.0 - p2 * (1.0 / 90.0)))));
    (cos, sin)
}

/// `(cos φ, sin φ)` for `|φ| <= π/4` to `f32` accuracy with the fewest terms: `sin φ` of degree 7,
/// `cos φ` of degree 8, in `φ²`, the coefficients Chebyshev fits on `[0, π²/16]` (computed for
/// this kernel; fit errors 1.5e-8 and 6e-10 in exact arithmetic).
#[inline(always)]
fn cos_sin_single(phi: f32) -> (f32, f32) {
    let p2 = phi * phi;
    let sin = (phi * p2).mul_add(
        p2.mul_add(p2.mul_add(-1.958_748e-4, 8.332_706e-3), -1.666_666_3e-1),
        phi,
    );
    let cos = p2.mul_add(
        p2.mul_add(
            p2.mul_add(p2.mul_add(2.453_009_2e-5, -1.388_825_3e-3), 4.166_667e-2),
            -5.0e-1,
        ),
        1.0,
    );
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_std_across_the_unit_interval() {
        let mut worst = 0.0f64;
        for k in 1..200_000u32 {
            let u = k as f32 / 200_000.0;
            let err = (f64::from(ln_unit(u)) - f64::from(u).ln()).abs();
            worst = worst.max(err);
        }
        assert!(worst < 2e-6, "worst ln error {worst}");
        assert_eq!(ln_unit(1.0), 0.0);
        assert!((f64::from(ln_unit(2f32.powi(-32))) + 32.0 * std::f64::consts::LN_2).abs() < 1e-5);
    }

    #[test]
    fn cos_sin_match_std_on_the_reduced_range() {
        for k in -1000..=1000 {
            let phi = k as f32 / 1000.0 * std::f32::consts::FRAC_PI_4;
            let (c, s) = cos_sin_small(phi);
            assert!(
                (c - phi.cos()).abs() < 2e-7 && (s - phi.sin()).abs() < 2e-7,
                "phi {phi}"
            );
        }
    }

    /// `n` normals of the stream keyed `key`, widened to `f64` (exact).
    fn draws<T: Normal + Into<f64>>(key: u64, n: usize) -> Vec<f64> {
        let mut stream = NormalStream::<T>::new(key);
        let mut z = vec![T::default(); n];
        stream.fill(&mut z);
        z.into_iter().map(Into::into).collect()
    }

    fn moments_are_those_of_a_standard_normal<T: Normal + Into<f64>>() {
        let n = 1 << 20;
        let z = draws::<T>(run_key(7, 3), n);
        let nf = n as f64;
        let mean = z.iter().sum::<f64>() / nf;
        let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / nf;
        let kurt = z.iter().map(|x| x.powi(4)).sum::<f64>() / nf;
        // Standard errors: mean 1/sqrt(n) = 1e-3, var sqrt(2/n) = 1.4e-3, E z^4 sqrt(96/n) = 9.6e-3; 5σ each.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 7e-3, "var {var}");
        assert!((kurt - 3.0).abs() < 0.05, "E z^4 {kurt}");
        // Tail mass beyond 3σ is 0.0027; binomial sd over n draws is 5e-5.
        let tail = z.iter().filter(|x| x.abs() > 3.0).count() as f64 / nf;
        assert!((tail - 0.0027).abs() < 3e-4, "tail {tail}");
    }

    #[test]
    fn normals_have_the_moments_of_a_standard_normal() {
        moments_are_those_of_a_standard_normal::<f64>();
        moments_are_those_of_a_standard_normal::<f32>();
    }

    fn pairs_and_lanes_are_uncorrelated<T: Normal + Into<f64>>(lanes: usize) {
        let n = 1 << 18;
        let z = draws::<T>(run_key(1, 1), n);
        // Cosine/sine partners sit PAIRS apart inside a block; neighbours are different lanes.
        for lag in [1, lanes, PAIRS, BLOCK] {
            let c = z.iter().zip(&z[lag..]).map(|(a, b)| a * b).sum::<f64>() / n as f64;
            assert!(
                c.abs() < 5.0 / (n as f64).sqrt(),
                "lag {lag} correlation {c}"
            );
        }
        // (z1^2 + z2^2) of a Box-Muller pair is exponential with mean 2: E r^4 = 8.
        let r4: f64 = z
            .chunks_exact(BLOCK)
            .flat_map(|b| {
                (0..PAIRS).map(move |l| (b[l] * b[l] + b[l + PAIRS] * b[l + PAIRS]).powi(2))
            })
            .sum::<f64>()
            / (n / 2) as f64;
        assert!((r4 - 8.0).abs() < 0.15, "E r^4 {r4}");
    }

    #[test]
    fn pairs_are_uncorrelated_and_lanes_independent() {
        pairs_and_lanes_are_uncorrelated::<f64>(LANES);
        pairs_and_lanes_are_uncorrelated::<f32>(WIDE_LANES);
    }

    #[test]
    fn f32_and_f64_streams_of_one_key_are_independent() {
        // Different kernels and lane counts: the two types' normals are uncorrelated.
        let n = 1 << 18;
        let (a, b) = (draws::<f64>(9, n), draws::<f32>(9, n));
        let c = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / n as f64;
        assert!(c.abs() < 5.0 / (n as f64).sqrt(), "correlation {c}");
    }

    #[test]
    fn the_f64_stream_is_the_one_the_core_always_drew() {
        // normals 0, 1, 7, 8, 127, 128, 255, 256, 299 of run (seed 0, run 0), as the core
        // drew them before f32 streams existed: changing them changes every f64 sweep
        let want: [u64; 9] = [
            0x3fdb_7568_8000_0000,
            0x3fe0_1124_8000_0000,
            0xbffa_f3c9_2000_0000,
            0x3ff1_8155_0000_0000,
            0x3fe2_d735_2000_0000,
            0x3fe1_a1d2_e000_0000,
            0xbffa_8e79_6000_0000,
            0xbfe6_f45a_2000_0000,
            0x3ffe_0ee9_8000_0000,
        ];
        let z = draws::<f64>(run_key(0, 0), 300);
        let got = [0, 1, 7, 8, 127, 128, 255, 256, 299].map(|i| z[i].to_bits());
        assert_eq!(got, want);
    }

    fn split_is_invisible<T: Normal + PartialEq>() {
        let mut a = NormalStream::<T>::new(42);
        let mut whole = vec![T::default(); 600];
        a.fill(&mut whole);
        let mut b = NormalStream::<T>::new(42);
        let mut parts = vec![T::default(); 600];
        let (p1, rest) = parts.split_at_mut(3);
        b.fill(p1);
        let (p2, p3) = rest.split_at_mut(300);
        b.fill(p2);
        b.fill(p3);
        assert!(whole == parts);
    }

    /// Lent slices, filled ones and single normals, in a mixed order, are the stream `fill`
    /// writes in one piece: lengths around [`MAX_LENT`], refills that keep a few normals left
    /// over (eleven steps of 100) and fills that empty the buffer first.
    fn lent_slices_are_the_stream<T: Normal + PartialEq>() {
        let mut steps = vec![(100, true); 11];
        steps.extend([
            (1, true),
            (MAX_LENT, true),
            (MAX_LENT + 1, true),
            (7, false),
            (1000, false),
            (MAX_LENT - 1, true),
            (100, false),
            (3 * BLOCK, true),
            (MAX_LENT, true),
        ]);
        let total: usize = steps.iter().map(|(n, _)| n + 1).sum();
        let mut whole = vec![T::default(); total];
        NormalStream::<T>::new(8).fill(&mut whole);
        let mut stream = NormalStream::<T>::new(8);
        let mut got = Vec::new();
        for (n, lent) in steps {
            let mut scratch = vec![T::default(); n];
            if lent {
                got.extend_from_slice(stream.next_slice(&mut scratch));
            } else {
                stream.fill(&mut scratch);
                got.extend_from_slice(&scratch);
            }
            got.push(stream.next_normal());
        }
        assert!(got == whole);
    }

    #[test]
    fn lent_slices_and_single_normals_are_the_stream_fill_writes() {
        lent_slices_are_the_stream::<f64>();
        lent_slices_are_the_stream::<f32>();
    }

    #[test]
    fn fill_is_the_same_stream_whatever_the_split() {
        split_is_invisible::<f64>();
        split_is_invisible::<f32>();
    }

    fn every_level_agrees<T: Normal + Into<f64>>() {
        let bits = |v: &[T]| {
            v.iter()
                .map(|&x| Into::<f64>::into(x).to_bits())
                .collect::<Vec<_>>()
        };
        let mut want_state = T::seed(5);
        let mut want = vec![T::default(); BLOCK * 16];
        T::fill_blocks_at(Level::Portable, &mut want_state, &mut want);
        // Every level the CPU has (bit patterns, so that a NaN would not hide a difference).
        for level in Level::ALL {
            let mut state = T::seed(5);
            let mut got = vec![T::default(); BLOCK * 16];
            T::fill_blocks_at(level, &mut state, &mut got);
            assert_eq!(bits(&got), bits(&want), "{level:?}");
            assert_eq!(state, want_state, "{level:?}");
        }
    }

    #[test]
    fn portable_and_dispatched_kernels_agree_bitwise() {
        every_level_agrees::<f64>();
        every_level_agrees::<f32>();
    }

    #[test]
    fn the_f32_polynomials_are_accurate_to_an_f32_ulp() {
        let mut worst_ln = 0.0f64;
        for k in 1..200_000u32 {
            let u = k as f32 / 200_000.0;
            let err = (f64::from(ln_unit_single(u)) - f64::from(u).ln()).abs();
            worst_ln = worst_ln.max(err);
        }
        assert!(worst_ln < 2e-6, "worst ln error {worst_ln}");
        let mut worst_trig = 0.0f64;
        for k in -1000..=1000 {
            let phi = k as f32 / 1000.0 * std::f32::consts::FRAC_PI_4;
            let (c, s) = cos_sin_single(phi);
            let p = f64::from(phi);
            worst_trig = worst_trig
                .max((f64::from(c) - p.cos()).abs())
                .max((f64::from(s) - p.sin()).abs());
        }
        // one ulp of 1 in f32 is 1.2e-7: the fits' own errors (6e-10, 1.5e-8) plus rounding
        assert!(worst_trig < 1.2e-7, "worst trig error {worst_trig}");
    }

    #[test]
    fn run_keys_differ_across_runs_and_seeds() {
        let keys: std::collections::HashSet<u64> = (0..1000)
            .flat_map(|i| (0..4).map(move |s| run_key(s, i)))
            .collect();
        assert_eq!(keys.len(), 4000);
    }

    #[test]
    fn crn_keys_differ_across_their_inputs_and_from_run_keys() {
        let mut keys: Vec<u64> = (0..3)
            .flat_map(|p| (1..4).flat_map(move |b| (0..4).map(move |r| crn_key(5, p, b, r))))
            .collect();
        keys.extend((0..36).map(|i| run_key(5, i)));
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n);
        assert_eq!(crn_key(5, 1, 2, 3), crn_key(5, 1, 2, 3));
        // the torch backend's `critbatch.torch.rng.crn_key` gives the same words
        assert_eq!(crn_key(1, 2, 3, 4), 0x6849_721e_fc61_74c8);
        assert_eq!(crn_key(0, 0, 0, 0), 0x6b4b_1bc5_f6d5_abdc);
        assert_ne!(crn_key(5, 1, 2, 3), crn_key(6, 1, 2, 3));
    }

    #[test]
    fn bounded_integers_are_uniform() {
        let mut rng = Xoshiro256pp::new(9, Purpose::Indices);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[rng.below(7) as usize] += 1;
        }
        // Each count ~ Binomial(70000, 1/7): sd 93; allow 5 sd.
        assert!(
            counts.iter().all(|&c| (c as f64 - 10_000.0).abs() < 465.0),
            "{counts:?}"
        );
    }

    #[test]
    fn uniforms_lie_in_the_unit_interval_with_mean_one_half() {
        let mut rng = Xoshiro256pp::new(3, Purpose::Indices);
        let u: Vec<f64> = (0..20_000).map(|_| rng.uniform()).collect();
        assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
        let mean = u.iter().sum::<f64>() / u.len() as f64;
        // sd of the mean 0.29 / sqrt(20000) = 0.002; allow 5 sd.
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
