#include "chai/chai.h"

const char *chai_version(void) { return CHAI_VERSION_STRING; }
