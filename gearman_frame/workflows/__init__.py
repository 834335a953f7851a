"""Workflows: chains, groups and chords of jobs, carried on by the workers that end each
step (no coordinator), their state and joins in the job ledger."""
from .canvas import (Chain, Chord, Function, Group, Plan, Signature, chain, chord, group,
                     plan_of, signature)
from .steps import is_workflow_id, new_workflow_id, outcome_of, step_id

__all__ = ["Chain", "Chord", "Function", "Group", "Plan", "Signature", "chain", "chord",
           "group", "plan_of", "signature", "is_workflow_id", "new_workflow_id",
           "outcome_of", "step_id"]
