"""Python side of `cargo run --release -p mp-bench -- manager`: a manager proxy round trip
(`len(list)`), two processes appending to one manager list, and the per-item rate of single
appends. Prints one JSON object on stdout."""
import json
import multiprocessing as mp
import sys
import time


def append_many(lst, n, start):
    start.wait()
    for i in range(n):
        lst.append(i)


def main():
    n_rtt, n_append = (int(a) for a in sys.argv[1:3])
    result = {}
    with mp.Manager() as manager:
        lst = manager.list()
        for _ in range(100):
            len(lst)
        t = time.perf_counter()
        for _ in range(n_rtt):
            len(lst)
        result["proxy_rtt_s"] = (time.perf_counter() - t) / n_rtt

        t = time.perf_counter()
        for i in range(n_append):
            lst.append(i)
        result["append_per_item_s"] = (time.perf_counter() - t) / n_append

        shared = manager.list()
        start = mp.Event()
        procs = [mp.Process(target=append_many, args=(shared, n_append, start)) for _ in range(2)]
        for p in procs:
            p.start()
        time.sleep(0.5)  # both children connected and waiting
        t = time.perf_counter()
        start.set()
        for p in procs:
            p.join()
        took = time.perf_counter() - t
        assert len(shared) == 2 * n_append
        result["two_appenders_ops_per_s"] = 2 * n_append / took
    print(json.dumps(result))


if __name__ == "__main__":
    main()
