/* Network plumbing over rtnetlink (libnl-route-3): taps, bridges,
 * addresses. No shelling out to ip(8). Every call opens its own netlink
 * socket, so the functions are safe to call from any thread. Interface
 * names are at most NET_IFNAME_MAX characters (IFNAMSIZ - 1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define NET_IFNAME_MAX 15

/* Checks an interface name the kernel would accept: 1-15 characters, no
 * '/', ':', whitespace, not "." or "..". */
int net_ifname_validate(const char *name, au_error *err);

/* 1 if a link of that name exists, 0 if not, negative errno on error. */
int net_link_exists(const char *name, au_error *err);

/* Creates a persistent tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) and returns
 * an O_CLOEXEC fd attached to it, for the VMM to inherit. Persistent: the
 * device outlives the fd (and the VMM) until net_link_delete, so its owner
 * decides when it goes. Exclusive (IFF_TUN_EXCL, decided by the kernel, no
 * check-then-act): -EEXIST when a link of that name exists already, and
 * then nothing was created (TUNSETIFF would otherwise silently attach to
 * someone else's tap). On any failure no device is left. */
int net_tap_create(const char *name, int *ret_fd, au_error *err);

int net_link_delete(const char *name, au_error *err);
int net_link_set_up(const char *name, au_error *err);
/* IFLA_IFALIAS: a free-text description shown by `ip link`. */
int net_link_set_alias(const char *name, const char *alias, au_error *err);
/* Enslaves name to bridge; -ENODEV if the bridge is missing, -EINVAL if it
 * is not a bridge. */
int net_link_set_master(const char *name, const char *bridge, au_error *err);
int net_bridge_create(const char *name, au_error *err);
/* 0 if name is an existing bridge; -ENOENT if no link has that name,
 * -EINVAL if the link is not a bridge. For checking a request before
 * anything is created. */
int net_bridge_check(const char *name, au_error *err);

/* Sets net.ipv6.conf.<name>.accept_dad = 0, so the link's own link-local
 * address is usable at once rather than after a second of DAD. */
int net_ipv6_disable_dad(const char *name, au_error *err);
/* Adds "fe80::1/64"-style addresses; nodad sets IFA_F_NODAD. An address
 * that is already there is not an error. */
int net_addr_add(const char *name, const char *cidr, bool nodad, au_error *err);

/* The EUI-64 IPv6 link-local address ("fe80::ff:fe00:1") a Linux guest
 * derives from mac ("02:00:00:00:00:01") with the default
 * addr_gen_mode; buf of at least 40 bytes. */
int net_mac_to_link_local(const char *mac, char *buf, size_t size);
