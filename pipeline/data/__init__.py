"""Dataset adapters: EPIC-KITCHENS CSVs, VISOR JSON, and the eval-set directory format."""
