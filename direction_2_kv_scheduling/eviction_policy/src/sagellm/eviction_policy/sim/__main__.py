"""``python -m sagellm.eviction_policy.sim``: see :mod:`sagellm.eviction_policy.sim.cli`."""

from sagellm.eviction_policy.sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
