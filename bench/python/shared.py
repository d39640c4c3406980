"""Python side of `cargo run --release -p mp-bench -- shared`: locked Value increments (one
process, then two), filling a shared double array from two processes, and handing a large
buffer to a worker (pickled through a Pipe). Prints one JSON object on stdout."""
import json
import multiprocessing as mp
import sys
import time


def increments(counter, barrier, n, out):
    barrier.wait()
    t = time.perf_counter()
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1
    out.put(time.perf_counter() - t)


def fill_half(arr, barrier, half, out):
    n = len(arr) // 2
    start = half * n
    view = memoryview(arr).cast("B").cast("d")
    barrier.wait()
    t = time.perf_counter()
    for i in range(start, start + n):
        view[i] = float(i)
    out.put(time.perf_counter() - t)


def receive(conn):
    while True:
        try:
            data = conn.recv()
        except EOFError:
            return
        conn.send(len(data) + data[len(data) // 2])


def main():
    n_incr, fill, handoff = (int(a) for a in sys.argv[1:4])
    ctx = mp.get_context("spawn")
    result = {}

    counter = ctx.Value("Q", 0)
    t = time.perf_counter()
    for _ in range(n_incr):
        with counter.get_lock():
            counter.value += 1
    result["incr_alone_s"] = (time.perf_counter() - t) / n_incr

    barrier, out = ctx.Barrier(2), ctx.Queue()
    ps = [ctx.Process(target=increments, args=(counter, barrier, n_incr, out)) for _ in range(2)]
    for p in ps:
        p.start()
    wall = max(out.get() for _ in ps)
    for p in ps:
        p.join()
    assert counter.value == 3 * n_incr
    result["incr_contended_s"] = wall / (2 * n_incr)

    arr = ctx.RawArray("d", fill)
    barrier = ctx.Barrier(2)
    ps = [ctx.Process(target=fill_half, args=(arr, barrier, h, out)) for h in range(2)]
    for p in ps:
        p.start()
    wall = max(out.get() for _ in ps)
    for p in ps:
        p.join()
    result["fill_bytes_per_s"] = fill * 8 / wall

    here, there = ctx.Pipe()
    p = ctx.Process(target=receive, args=(there,))
    p.start()
    big = bytes([7]) * handoff
    rounds = 3
    here.send(big)
    here.recv()
    t = time.perf_counter()
    for _ in range(rounds):
        here.send(big)
        assert here.recv() == handoff + 7
    result["handoff_s"] = (time.perf_counter() - t) / rounds
    here.close()
    p.join()

    print(json.dumps(result))


if __name__ == "__main__":
    main()
