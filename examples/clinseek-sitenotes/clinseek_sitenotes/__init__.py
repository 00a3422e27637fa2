"""Example clinseek plugin: a bedside-note toolset and a keyword host."""
