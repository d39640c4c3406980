"""Python side of `cargo run --release -p mp-bench -- foundation`: the same four measurements
with multiprocessing, printed as one JSON object on stdout."""
import json
import multiprocessing as mp
import sys
import time


def trivial():
    pass


def echo(conn):
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        conn.send(msg)


def produce_small(q, n):
    for i in range(n):
        q.put(i)


def produce_big(q, n, size):
    payload = b"x" * size
    for _ in range(n):
        q.put(payload)


def spawn_join(ctx, n):
    start = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=trivial)
        p.start()
        p.join()
    return (time.perf_counter() - start) / n


def main():
    spawn_n, rtt_n, small_n, big_n = (int(a) for a in sys.argv[1:5])
    out = {}
    out["spawn_join_s"] = spawn_join(mp.get_context("spawn"), spawn_n)
    out["fork_join_s"] = spawn_join(mp.get_context("fork"), spawn_n)
    forkserver = mp.get_context("forkserver")
    spawn_join(forkserver, 1)  # starts the server: not part of the figure
    out["forkserver_join_s"] = spawn_join(forkserver, spawn_n)

    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    a.send(0)
    a.recv()
    start = time.perf_counter()
    for i in range(rtt_n):
        a.send(i)
        a.recv()
    out["pipe_rtt_s"] = (time.perf_counter() - start) / rtt_n
    a.close()
    p.join()

    q = ctx.Queue()
    p = ctx.Process(target=produce_small, args=(q, small_n))
    start = time.perf_counter()
    p.start()
    for _ in range(small_n):
        q.get()
    out["queue_small_msgs_per_s"] = small_n / (time.perf_counter() - start)
    p.join()

    size = 1 << 20
    q = ctx.Queue()
    p = ctx.Process(target=produce_big, args=(q, big_n, size))
    start = time.perf_counter()
    p.start()
    for _ in range(big_n):
        q.get()
    out["queue_1mib_bytes_per_s"] = big_n * size / (time.perf_counter() - start)
    p.join()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
