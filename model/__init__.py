"""sessionguard.model"""
