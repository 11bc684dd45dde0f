"""livesight.memory"""
