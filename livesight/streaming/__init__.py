"""livesight.streaming"""
