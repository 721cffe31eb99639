"""An example Django project warmed by cachewarm_django (and its tests' subject)."""
