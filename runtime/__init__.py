"""Execution and estimation: reference evaluator, executor, numerics, cost model, targets."""
