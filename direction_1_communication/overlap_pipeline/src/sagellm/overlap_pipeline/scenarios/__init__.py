"""Three workloads that overlap real communication with real computation (they need torch).

- :mod:`.kv_prefetch` (a): decode layer ``l`` while layer ``l + 1``'s KV is
  read from a file on disk into host memory;
- :mod:`.kv_shipping` (b): prefill layer ``l`` while layer ``l - 1``'s KV
  goes over a Unix stream socket to a receiver process;
- :mod:`.tp_all_reduce` (c): tensor-parallel layers with two micro-batches,
  one computing while the other's all-reduce runs, waited just before use.

Each ``run(manager, compute=True, comm=True)`` gives the same tensors with
any manager (the serial one is the reference); switching one side off
times the other alone. Submodules are imported on demand so that the KV
receiver process, which needs no torch, starts fast.
"""
