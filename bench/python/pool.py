"""Python side of `cargo run --release -p mp-bench -- pool`: Pool.map of a million squares
with the default chunksize (best of 3 after a full-size warm-up), Pool.apply round trips, 64 CPU-bound tasks of ~20 ms (parallel
efficiency against a sequential run), and pool start-up. Prints one JSON object on stdout."""
import json
import multiprocessing as mp
import sys
import time


def square(n):
    return n * n


def burn(iters):
    x = 88172645463325252
    for _ in range(iters):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    return x


def calibrate(target_s):
    iters = 1000
    while True:
        t = time.perf_counter()
        burn(iters)
        took = time.perf_counter() - t
        if took > 0.05:
            return int(iters * target_s / took)
        iters *= 2


def main():
    n_map, n_apply, tasks, workers = (int(a) for a in sys.argv[1:5])
    result = {}

    t = time.perf_counter()
    with mp.Pool(workers) as pool:
        pool.apply(square, (1,))
    result["startup_s"] = time.perf_counter() - t

    with mp.Pool(workers) as pool:
        pool.map(square, range(n_map))  # warm-up, full size, as on the Rust side
        result["map_s"] = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            out = pool.map(square, range(n_map))
            result["map_s"] = min(result["map_s"], time.perf_counter() - t)
            assert out[-1] == (n_map - 1) ** 2

        for _ in range(10):
            pool.apply(square, (3,))
        t = time.perf_counter()
        for _ in range(n_apply):
            pool.apply(square, (3,))
        result["apply_s"] = (time.perf_counter() - t) / n_apply

        iters = calibrate(0.02)
        t = time.perf_counter()
        for _ in range(tasks):
            burn(iters)
        seq = time.perf_counter() - t
        t = time.perf_counter()
        pool.map(burn, [iters] * tasks)
        par = time.perf_counter() - t
        result["cpu_efficiency"] = seq / (par * workers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
