"""livesight.bench"""
