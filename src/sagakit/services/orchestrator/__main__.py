from sagakit.services.host import serve
from sagakit.services.orchestrator import SPEC

serve(SPEC)
