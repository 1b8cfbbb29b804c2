"""SMART image classification: frozen modules combined by per-task α/β, grown by evolution."""
