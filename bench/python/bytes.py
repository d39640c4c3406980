"""Python side of `cargo run --release -p mp-bench -- bytes`: `bytes` and `str` of two sizes as
the argument and result of `Pool.apply` (spawn context, pool started before timing), and a
`Queue` of `bytes` items of 64 KiB, 1 MiB and 64 MiB. Prints one JSON object on stdout."""
import json
import multiprocessing as mp
import sys
import time


def identity(x):
    return x


def produce(q, n, size):
    payload = b"x" * size
    for _ in range(n):
        q.put(payload)


def median(runs, f):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    small, large, runs, queue_bytes = (int(a) for a in sys.argv[1:5])
    ctx = mp.get_context("spawn")
    out = {}
    with ctx.Pool(1) as pool:
        for n, key in ((small, "1mb"), (large, "100mb")):
            data = b"\x07" * n
            out[f"bytes_{key}_s"] = median(runs, lambda: pool.apply(identity, (data,)))
            text = "x" * n
            out[f"str_{key}_s"] = median(runs, lambda: pool.apply(identity, (text,)))
            del data, text

    for size, key in ((64 << 10, "64k"), (1 << 20, "1m"), (64 << 20, "64m")):
        n = max(queue_bytes // size, 4)
        q = ctx.Queue()
        p = ctx.Process(target=produce, args=(q, n, size))
        start = time.perf_counter()
        p.start()
        for _ in range(n):
            q.get()
        out[f"queue_{key}_bytes_per_s"] = n * size / (time.perf_counter() - start)
        p.join()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
