"""livesight.daemon"""
