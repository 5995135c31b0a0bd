//! The products alone, on one thread, in process CPU time: what the SIMD
//! levels and the tile shapes cost, apart from the kernels around them.
//!
//!     cargo run --release --example products
//!
//! Best of 3 calls each, on one rayon thread, for the AVX-512 and AVX2 levels
//! (as far as the CPU has them): the product of `nearest_neighbors` at 3,224 x
//! 4,918 x 2,048 in blocks of 256 queries against the whole pool and in the
//! kernel's tiles of 256 x 1,640, the whole `nearest_neighbors` call, the
//! product of 12,800 rows of `topk_scores` (C = 1,000, d = 2,048) and the whole
//! `topk_scores` call. CPU time rather than wall time, so that other processes
//! on a shared machine change the figures less.

use alphanet_fast::matmul::a_bt;
use alphanet_fast::simd::Simd;
use alphanet_fast::{nearest_neighbors, topk_scores, Metric};
use ndarray::{s, Array2};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = cpu_seconds();
            f();
            cpu_seconds() - t
        })
        .fold(f64::MAX, f64::min)
}

fn uniform(rows: usize, cols: usize, seed: &mut u64) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32) / 16777216.0 - 0.5
    })
}

fn main() {
    let mut seed = 1u64;
    let q = uniform(3224, 2048, &mut seed);
    let p = uniform(4918, 2048, &mut seed);
    let x = uniform(12800, 2048, &mut seed);
    let w = uniform(1000, 2048, &mut seed);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let gflops = |flops: f64, t: f64| flops / t / 1e9;
    for level in [Simd::Avx512, Simd::Avx2] {
        if level > Simd::detected() {
            continue;
        }
        std::env::set_var(alphanet_fast::simd::SIMD_ENV, level.name());
        one.install(|| {
            let mut out = vec![0f32; 256 * 4918];
            let whole = best_of_3(|| {
                for q0 in (0..3224).step_by(256) {
                    let rows = q.slice(s![q0..(q0 + 256).min(3224), ..]);
                    a_bt(level, rows, p.view(), &mut out, 4918);
                }
            });
            let tiled = best_of_3(|| {
                for q0 in (0..3224).step_by(256) {
                    let rows = q.slice(s![q0..(q0 + 256).min(3224), ..]);
                    for c0 in (0..4918).step_by(1640) {
                        let c1 = (c0 + 1640).min(4918);
                        a_bt(level, rows, p.slice(s![c0..c1, ..]), &mut out, c1 - c0);
                    }
                }
            });
            let nn = best_of_3(|| {
                nearest_neighbors(q.view(), p.view(), 5, Metric::Euclidean).unwrap();
            });
            let mut scores = vec![0f32; 256 * 1000];
            let product = best_of_3(|| {
                for r0 in (0..12800).step_by(256) {
                    a_bt(
                        level,
                        x.slice(s![r0..r0 + 256, ..]),
                        w.view(),
                        &mut scores,
                        1000,
                    );
                }
            });
            let topk = best_of_3(|| {
                topk_scores(x.view(), w.view(), None, 5).unwrap();
            });
            let nn_flops = 2.0 * 3224.0 * 4918.0 * 2048.0;
            let topk_flops = 2.0 * 12800.0 * 1000.0 * 2048.0;
            println!(
                "{}: nn product {whole:.3} s ({:.0} GFLOP/s), in tiles {tiled:.3} s, \
                 nearest_neighbors {nn:.3} s | topk product {product:.3} s ({:.0} GFLOP/s), \
                 topk_scores {topk:.3} s",
                level.name(),
                gflops(nn_flops, whole),
                gflops(topk_flops, product),
            );
        });
    }
}
