#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include "helpers.h"

int vsd_rte_errno(void) { return rte_errno; }
void *vsd_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
unsigned int vsd_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
unsigned int vsd_max_lcore(void) { return RTE_MAX_LCORE; }
unsigned int vsd_max_ethports(void) { return RTE_MAX_ETHPORTS; }
