// In-tree spelling of the installed <shmports/status.h>: the one definition
// lives in core/base/status.h (installed under this name by
// core/base/meson.build). This forwarding header is not installed.
#include "core/base/status.h"
