/* Function forms of DPDK macros that bindgen cannot translate. */
#ifndef VSD_DPDK_HELPERS_H
#define VSD_DPDK_HELPERS_H
#include <rte_mbuf.h>
#include <rte_ring.h>

/* rte_errno is a per-lcore TLS macro. */
int vsd_rte_errno(void);
/* rte_pktmbuf_mtod(m, void *) */
void *vsd_pktmbuf_mtod(struct rte_mbuf *m);
/* RTE_PKTMBUF_HEADROOM, a build-time constant of the DPDK we link. */
unsigned int vsd_pktmbuf_headroom(void);
/* RTE_MAX_LCORE and RTE_MAX_ETHPORTS of the DPDK we link. */
unsigned int vsd_max_lcore(void);
unsigned int vsd_max_ethports(void);
/* A stdio stream whose writes go to `write` (glibc's fopencookie, whose
 * cookie_io_functions_t bindgen and the libc crate do not offer), line
 * buffered, for rte_openlog_stream. NULL on failure. */
#include <stdio.h>
#include <sys/types.h>
FILE *vsd_log_stream(ssize_t (*write)(void *cookie, const char *buf, size_t size));
#endif
