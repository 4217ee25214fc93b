"""Sub-commands of the ``tfseg`` command line, one module each (see ``tfseg.cli``)."""
