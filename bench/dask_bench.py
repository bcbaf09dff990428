#!/usr/bin/env python3
"""The peer of runtime_bench: the same 10,000-task no-op DAG, 1,000-task
dependent chain and async no-op tasks on Dask distributed (a LocalCluster of
two worker processes, one thread each). Prints `name: value unit` lines."""
import sys
import time

from dask.distributed import Client, LocalCluster, wait


def noop(*args):
    return None


def inc(x):
    return x + 1


def main():
    quick = "--quick" in sys.argv
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    wait(client.map(noop, range(200), pure=False))  # warm up

    n = 2000 if quick else 10000
    t0 = time.perf_counter()
    wait(client.map(noop, range(n), pure=False))
    print(f"dask_tasks_async: {n / (time.perf_counter() - t0):.6g} tasks/s", flush=True)

    t0 = time.perf_counter()
    for _ in range(200 if quick else 1000):
        client.submit(noop, pure=False).result()
    m = 200 if quick else 1000
    print(f"dask_tasks_sync: {m / (time.perf_counter() - t0):.6g} tasks/s", flush=True)

    width, depth = 100, 100
    t0 = time.perf_counter()
    prev = None
    for _layer in range(depth):
        if prev is None:
            cur = [client.submit(noop, pure=False) for _ in range(width)]
        else:
            cur = [client.submit(noop, prev[i], prev[(i + 1) % width], pure=False) for i in range(width)]
        prev = cur
    wait(prev)
    print(f"dask_dag_10000_noop_tasks: {time.perf_counter() - t0:.6g} s", flush=True)

    t0 = time.perf_counter()
    f = client.submit(inc, 0, pure=False)
    for _ in range(999):
        f = client.submit(inc, f, pure=False)
    value = f.result()
    assert value == 1000, value
    print(f"dask_chain_1000_tasks: {time.perf_counter() - t0:.6g} s", flush=True)
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
