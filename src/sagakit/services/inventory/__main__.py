from sagakit.services.host import serve
from sagakit.services.inventory import SPEC

serve(SPEC)
