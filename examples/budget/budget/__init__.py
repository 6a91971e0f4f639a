"""A household budget on lockstep: rollups by month x category x expense type x member, with
provisions and tax rates memoized on them. See ``examples/budget/README.md``."""
