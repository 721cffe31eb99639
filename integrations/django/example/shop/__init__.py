"""The example app: profiles, settings, reference data, permissions, a dashboard."""
