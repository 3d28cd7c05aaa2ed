"""z3 proofs of the session guard's safety properties, beyond every bound.

See docs/proofs.md: `encoding` (the abstract rules of each design), `abstraction`
(model state -> abstract state), `system` (z3 relation, BMC), `claims` (the
properties), `invariants` (the reference proof's lemmas), `prove` (the engine).
"""
