"""The demo district: reference data (district.json) and its loader, `onedoor demo load`."""
