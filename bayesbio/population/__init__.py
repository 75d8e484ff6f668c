"""Population (hierarchical, patient-level) models with dosing events."""
