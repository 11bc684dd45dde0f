"""livesight.protocols"""
