"""sessionguard.loop"""
