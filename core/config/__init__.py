"""Settings: the typed model, where its values come from (.env files and the
environment), the checks `arbops config check` runs, and the text that documents
each setting. Part of the kernel: everything else in core may import it."""
