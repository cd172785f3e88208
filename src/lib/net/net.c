/* rtnetlink helpers on libnl-route-3. libnl returns its own NLE_* codes;
 * net_nlerr maps the ones callers act on back to errno. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

static int net_nlerr(int nlerr) {
  switch (nlerr < 0 ? -nlerr : nlerr) {
  case NLE_EXIST: return -EEXIST;
  case NLE_OBJ_NOTFOUND:
  case NLE_NODEV: return -ENODEV;
  case NLE_PERM: return -EPERM;
  case NLE_NOACCESS: return -EACCES;
  case NLE_NOMEM: return -ENOMEM;
  case NLE_BUSY: return -EBUSY;
  case NLE_INVAL: return -EINVAL;
  case NLE_RANGE: return -ERANGE;
  case NLE_OPNOTSUPP: return -EOPNOTSUPP;
  default: return -EIO;
  }
}

static void nl_sockp(struct nl_sock **s) {
  if (*s) nl_socket_free(*s);
}
static void rtnl_linkp(struct rtnl_link **l) {
  if (*l) rtnl_link_put(*l);
}
#define _cleanup_nl_sock_ _cleanup_(nl_sockp)
#define _cleanup_link_ _cleanup_(rtnl_linkp)

static int net_open(struct nl_sock **ret, au_error *err) {
  struct nl_sock *s = nl_socket_alloc();
  if (!s) return au_error_set(err, -ENOMEM, "netlink: out of memory");
  int r = nl_connect(s, NETLINK_ROUTE);
  if (r < 0) {
    nl_socket_free(s);
    return au_error_set(err, net_nlerr(r), "netlink: connect: %s", nl_geterror(r));
  }
  *ret = s;
  return 0;
}

int net_ifname_validate(const char *name, au_error *err) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len > NET_IFNAME_MAX)
    return au_error_set(err, -EINVAL, "interface name \"%s\" must be 1-%d characters",
                        name ? name : "", NET_IFNAME_MAX);
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strpbrk(name, "/: \t\n"))
    return au_error_set(err, -EINVAL, "invalid interface name \"%s\"", name);
  return 0;
}

static int net_get_link(struct nl_sock *s, const char *name, struct rtnl_link **ret,
                        au_error *err) {
  int r = rtnl_link_get_kernel(s, 0, name, ret);
  if (r < 0) return au_error_set(err, net_nlerr(r), "link %s: %s", name, nl_geterror(r));
  return 0;
}

/* Looks a link up by name on a socket of its own: 1 with *ret set, 0 when
 * there is no such link, or a negative errno. */
static int find_link(const char *name, struct rtnl_link **ret, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  _cleanup_nl_sock_ struct nl_sock *s = NULL;
  if ((r = net_open(&s, err)) < 0) return r;
  r = rtnl_link_get_kernel(s, 0, name, ret);
  if (r == 0) return 1;
  if (net_nlerr(r) == -ENODEV) return 0;
  return au_error_set(err, net_nlerr(r), "link %s: %s", name, nl_geterror(r));
}

int net_link_exists(const char *name, au_error *err) {
  _cleanup_link_ struct rtnl_link *l = NULL;
  return find_link(name, &l, err);
}

int net_tap_create(const char *name, int *ret_fd, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  /* rtnetlink cannot create tun/tap devices (the tun driver refuses
   * RTM_NEWLINK), so creation goes through /dev/net/tun; everything else
   * about the link is netlink. */
  _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "tap %s: open /dev/net/tun", name);
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  /* IFF_TUN_EXCL: without it TUNSETIFF silently attaches to an existing
   * (persistent, detached) tap of that name, and a separate existence
   * check races with other creators. With it the kernel decides under
   * rtnl_lock: a new device, or EBUSY for any link of that name. */
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    if (errno == EBUSY)
      return au_error_set(err, -EEXIST, "tap %s: a link of that name exists", name);
    return au_error_errno(err, -errno, "tap %s: TUNSETIFF", name);
  }
  /* Until TUNSETPERSIST the device lives only as long as fd: on failure
   * the close below removes it, so the caller has nothing to undo. */
  if (ioctl(fd, TUNSETPERSIST, 1) < 0)
    return au_error_errno(err, -errno, "tap %s: TUNSETPERSIST", name);
  log_debug("net: created tap %s", name);
  *ret_fd = TAKE_FD(fd);
  return 0;
}

int net_link_delete(const char *name, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  _cleanup_nl_sock_ struct nl_sock *s = NULL;
  if ((r = net_open(&s, err)) < 0) return r;
  _cleanup_link_ struct rtnl_link *l = rtnl_link_alloc();
  if (!l) return au_error_set(err, -ENOMEM, "netlink: out of memory");
  rtnl_link_set_name(l, name);
  r = rtnl_link_delete(s, l);
  if (r < 0) return au_error_set(err, net_nlerr(r), "delete link %s: %s", name, nl_geterror(r));
  log_debug("net: deleted link %s", name);
  return 0;
}

/* Applies one change (built by fill) to the link named name. */
static int net_link_change(const char *name, const char *what,
                           int (*fill)(struct nl_sock *, struct rtnl_link *, const void *,
                                       au_error *),
                           const void *arg, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  _cleanup_nl_sock_ struct nl_sock *s = NULL;
  if ((r = net_open(&s, err)) < 0) return r;
  _cleanup_link_ struct rtnl_link *old = NULL;
  if ((r = net_get_link(s, name, &old, err)) < 0) return r;
  _cleanup_link_ struct rtnl_link *chg = rtnl_link_alloc();
  if (!chg) return au_error_set(err, -ENOMEM, "netlink: out of memory");
  if ((r = fill(s, chg, arg, err)) < 0) return r;
  r = rtnl_link_change(s, old, chg, 0);
  if (r < 0) return au_error_set(err, net_nlerr(r), "link %s: %s: %s", name, what, nl_geterror(r));
  return 0;
}

static int fill_up(struct nl_sock *s, struct rtnl_link *chg, const void *arg, au_error *err) {
  (void)s, (void)arg, (void)err;
  rtnl_link_set_flags(chg, IFF_UP);
  return 0;
}

int net_link_set_up(const char *name, au_error *err) {
  return net_link_change(name, "set up", fill_up, NULL, err);
}

static int fill_alias(struct nl_sock *s, struct rtnl_link *chg, const void *arg, au_error *err) {
  (void)s, (void)err;
  rtnl_link_set_ifalias(chg, arg);
  return 0;
}

int net_link_set_alias(const char *name, const char *alias, au_error *err) {
  return net_link_change(name, "set alias", fill_alias, alias, err);
}

static int fill_master(struct nl_sock *s, struct rtnl_link *chg, const void *arg, au_error *err) {
  const char *bridge = arg;
  _cleanup_link_ struct rtnl_link *br = NULL;
  int r = net_get_link(s, bridge, &br, err);
  if (r < 0) return au_error_prefix(err, "bridge"), r;
  if (!rtnl_link_is_bridge(br)) return au_error_set(err, -EINVAL, "%s is not a bridge", bridge);
  rtnl_link_set_master(chg, rtnl_link_get_ifindex(br));
  return 0;
}

int net_link_set_master(const char *name, const char *bridge, au_error *err) {
  int r = net_ifname_validate(bridge, err);
  if (r < 0) return r;
  return net_link_change(name, "attach to bridge", fill_master, bridge, err);
}

int net_bridge_create(const char *name, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  _cleanup_nl_sock_ struct nl_sock *s = NULL;
  if ((r = net_open(&s, err)) < 0) return r;
  _cleanup_link_ struct rtnl_link *l = rtnl_link_bridge_alloc();
  if (!l) return au_error_set(err, -ENOMEM, "netlink: out of memory");
  rtnl_link_set_name(l, name);
  r = rtnl_link_add(s, l, NLM_F_CREATE | NLM_F_EXCL);
  if (r < 0) return au_error_set(err, net_nlerr(r), "create bridge %s: %s", name, nl_geterror(r));
  return 0;
}

int net_bridge_check(const char *name, au_error *err) {
  _cleanup_link_ struct rtnl_link *l = NULL;
  int r = find_link(name, &l, err);
  if (r < 0) return r;
  if (r == 0) return au_error_set(err, -ENOENT, "bridge %s does not exist", name);
  if (!rtnl_link_is_bridge(l)) return au_error_set(err, -EINVAL, "%s is not a bridge", name);
  return 0;
}

int net_ipv6_disable_dad(const char *name, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  char path[128];
  snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/accept_dad", name);
  _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return au_error_errno(err, -errno, "open %s", path);
  if (write(fd, "0\n", 2) != 2) return au_error_errno(err, -errno, "write %s", path);
  return 0;
}

int net_addr_add(const char *name, const char *cidr, bool nodad, au_error *err) {
  int r = net_ifname_validate(name, err);
  if (r < 0) return r;
  _cleanup_nl_sock_ struct nl_sock *s = NULL;
  if ((r = net_open(&s, err)) < 0) return r;
  _cleanup_link_ struct rtnl_link *l = NULL;
  if ((r = net_get_link(s, name, &l, err)) < 0) return r;
  struct nl_addr *local = NULL;
  r = nl_addr_parse(cidr, AF_UNSPEC, &local);
  if (r < 0) return au_error_set(err, -EINVAL, "bad address %s: %s", cidr, nl_geterror(r));
  struct rtnl_addr *a = rtnl_addr_alloc();
  if (!a) {
    nl_addr_put(local);
    return au_error_set(err, -ENOMEM, "netlink: out of memory");
  }
  rtnl_addr_set_ifindex(a, rtnl_link_get_ifindex(l));
  r = rtnl_addr_set_local(a, local);
  nl_addr_put(local);
  if (r == 0 && nodad) rtnl_addr_set_flags(a, IFA_F_NODAD);
  if (r == 0) r = rtnl_addr_add(s, a, 0);
  rtnl_addr_put(a);
  if (r < 0 && net_nlerr(r) != -EEXIST)
    return au_error_set(err, net_nlerr(r), "add %s to %s: %s", cidr, name, nl_geterror(r));
  return 0;
}

int net_mac_to_link_local(const char *mac, char *buf, size_t size) {
  unsigned b[6];
  char tail;
  if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) !=
      6)
    return -EINVAL;
  /* EUI-64: flip the universal/local bit, insert ff:fe in the middle. */
  unsigned char a[16] = {0xfe,
                         0x80,
                         0,
                         0,
                         0,
                         0,
                         0,
                         0,
                         (unsigned char)(b[0] ^ 2),
                         (unsigned char)b[1],
                         (unsigned char)b[2],
                         0xff,
                         0xfe,
                         (unsigned char)b[3],
                         (unsigned char)b[4],
                         (unsigned char)b[5]};
  return inet_ntop(AF_INET6, a, buf, (socklen_t)size) ? 0 : -ENOSPC;
}
