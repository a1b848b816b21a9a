"""gunicorn's entry point for upstream OpenStack's WSGI applications (run in the upstream venv):

    gunicorn 'wsgi_app:load("keystone.wsgi.api")'      # or glance.wsgi.api, placement.wsgi.api,
                                                        # nova.wsgi.osapi_compute

Keystone and nova parse the process's argv with oslo.config while their application is built;
under gunicorn that argv is gunicorn's own command line (--bind, --workers, ...), which they
reject. So the argv is cut to the program's name before the application's module is imported.
gunicorn calls this in each worker after the fork (no --preload), so each worker builds its own
application, with its own database pool, as under uWSGI or mod_wsgi. Each service finds its
configuration through its own variable (OS_KEYSTONE_CONFIG_DIR, OS_GLANCE_CONFIG_DIR,
OS_PLACEMENT_CONFIG_DIR, OS_NOVA_CONFIG_DIR), which `up.sh` sets.
"""

import importlib
import sys
from typing import Any


def load(module: str) -> Any:
    sys.argv = sys.argv[:1]
    return importlib.import_module(module).application
