"""sessionguard.proofs"""
