#define _GNU_SOURCE
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include "helpers.h"

int vsd_rte_errno(void) { return rte_errno; }
void *vsd_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
unsigned int vsd_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
unsigned int vsd_max_lcore(void) { return RTE_MAX_LCORE; }
unsigned int vsd_max_ethports(void) { return RTE_MAX_ETHPORTS; }

FILE *vsd_log_stream(ssize_t (*write)(void *cookie, const char *buf, size_t size))
{
	cookie_io_functions_t funcs = { .read = NULL, .write = write, .seek = NULL, .close = NULL };
	FILE *f = fopencookie(NULL, "w", funcs);
	if (f != NULL)
		setvbuf(f, NULL, _IOLBF, 0);
	return f;
}
