"""sessionguard.reference"""
