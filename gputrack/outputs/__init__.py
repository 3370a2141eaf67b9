"""The sensor's output modes and their writers (track logs, MOTChallenge text, images)."""
