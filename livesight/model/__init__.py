"""livesight.model"""
