//! Batched UDP I/O for the media driver: `recvmmsg` and `sendmmsg` on the tokio socket's file
//! descriptor, so that one system call moves up to [`BATCH`] datagrams each way.
//!
//! Written by hand because no well-kept crate does this for our pattern: tokio has no batch
//! API, and quinn-udp batches only segments of one size to one destination (GSO), while an SFU
//! sends each datagram to a different site. Linux only, like the rest of the product.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram kept (media datagrams stay under the path MTU).
const MAX_DATAGRAM: usize = 2048;

/// Ask the kernel to stamp every datagram with its arrival time, read back by
/// [`RecvBatch::arrivals`].
pub use hnth_net::enable_arrival_stamps;
use hnth_net::{arrival_stamp, STAMP_CONTROL_BYTES as CONTROL};

/// Preallocated buffers for one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    /// Control messages (the kernel's arrival stamp), 8-aligned as cmsghdr needs.
    control: Vec<[u64; CONTROL / 8]>,
    /// Arrival times since the Unix epoch, when the socket stamps them.
    stamps: Vec<Option<std::time::Duration>>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: vec![0; BATCH],
            control: vec![[0; CONTROL / 8]; BATCH],
            stamps: vec![None; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Receive what is waiting (at most [`BATCH`]) without blocking; `WouldBlock` when nothing is.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let n = socket.try_io(Interest::READABLE, || {
            let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for i in 0..BATCH {
                iovecs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: MAX_DATAGRAM,
                };
                msgs[i].msg_hdr.msg_name =
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_control = self.control[i].as_mut_ptr().cast();
                msgs[i].msg_hdr.msg_controllen = CONTROL as _;
            }
            // SAFETY: every pointer refers to buffers owned by `self` or this frame, sized as
            // declared, alive for the call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, m) in msgs.iter().enumerate().take(r as usize) {
                self.lens[i] = m.msg_len as usize;
                self.stamps[i] = arrival_stamp(&m.msg_hdr);
            }
            Ok(r as usize)
        })?;
        self.count = n;
        Ok(n)
    }

    /// The bytes of the datagrams of the last `recv`.
    pub fn bytes(&self) -> usize {
        self.lens[..self.count].iter().sum()
    }

    /// When the kernel received each datagram of the last `recv` (since the Unix epoch), for
    /// those it stamped.
    pub fn arrivals(&self) -> impl Iterator<Item = std::time::Duration> + '_ {
        self.stamps[..self.count].iter().flatten().copied()
    }

    /// The datagrams of the last `recv` with the monotonic time each arrived: the kernel's
    /// stamp where there is one, else `now` (the realtime stamp is moved onto the monotonic
    /// clock through the pair `now`, `now_realtime` read together).
    pub fn datagrams_at(
        &self,
        now: Instant,
        now_realtime: Duration,
    ) -> impl Iterator<Item = (Instant, SocketAddr, &[u8])> {
        (0..self.count).filter_map(move |i| {
            let addr = from_storage(&self.addrs[i])?;
            let at = self.stamps[i].map_or(now, |t| {
                now.checked_sub(now_realtime.saturating_sub(t))
                    .unwrap_or(now)
            });
            Some((at, addr, &self.bufs[i][..self.lens[i].min(MAX_DATAGRAM)]))
        })
    }
}

/// Preallocated headers for `sendmmsg`, reused from one flush to the next.
pub struct SendBatch {
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside the headers are written just before each `sendmmsg` and are
// never read otherwise, so moving the batch to another thread between calls is sound.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            // SAFETY: plain C structs; all zeroes is a valid value (null pointers, zero lengths).
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovecs: vec![unsafe { zeroed() }; BATCH],
            msgs: vec![unsafe { zeroed() }; BATCH],
        }
    }
}

impl SendBatch {
    /// Send datagrams in batches of [`BATCH`]. UDP semantics: what the kernel cannot take now
    /// is dropped (the peers' NACK and keyframe machinery recovers). Returns how many were
    /// dropped.
    pub fn send_all(&mut self, socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> usize {
        let fd = socket.as_raw_fd();
        let mut dropped = 0;
        for chunk in datagrams.chunks(BATCH) {
            for (i, (dest, data)) in chunk.iter().enumerate() {
                let len = to_storage(dest, &mut self.addrs[i]);
                self.iovecs[i] = libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                };
                let hdr = &mut self.msgs[i].msg_hdr;
                hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = len;
                hdr.msg_iov = &mut self.iovecs[i];
                hdr.msg_iovlen = 1;
            }
            let mut sent = 0;
            while sent < chunk.len() {
                // Called directly, not through tokio's readiness: the socket is non-blocking
                // and the driver never waits for it to become writable.
                // SAFETY: the headers point into `self` and into `datagrams`, both alive for
                // the call.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.msgs[sent..].as_mut_ptr(),
                        (chunk.len() - sent) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if r == 0 || e.kind() == io::ErrorKind::WouldBlock {
                    // The send buffer is full: the rest of this batch is dropped.
                    dropped += chunk.len() - sent;
                    break;
                }
                // This datagram is refused (e.g. an ICMP error reported late): skip it, go on.
                tracing::trace!("udp sendmmsg: {e}");
                dropped += 1;
                sent += 1;
            }
        }
        dropped
    }
}

fn to_storage(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() = sin };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() = sin6
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["10.77.0.1:18444", "[::1]:5000", "[fe80::1%2]:9"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut st: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(&addr, &mut st);
            assert_eq!(from_storage(&st), Some(addr), "{a}");
        }
    }

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 100 + i as usize]).collect();
        let list: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(SendBatch::default().send_all(&a, &list), 0);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut batch = RecvBatch::default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 100 && std::time::Instant::now() < deadline {
            b.readable().await.unwrap();
            match batch.recv(&b) {
                Ok(_) => {
                    let now = std::time::Instant::now();
                    for (at, from, data) in batch.datagrams_at(now, hnth_net::realtime()) {
                        assert_eq!(at, now, "not stamped: the time it is handled");
                        assert_eq!(from, a.local_addr().unwrap());
                        got.push(data.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
    }

    #[tokio::test]
    async fn arrivals_are_stamped_by_the_kernel_when_asked() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let mut batch = RecvBatch::default();
        for stamped in [false, true] {
            if stamped {
                enable_arrival_stamps(&b).unwrap();
            }
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            a.send_to(b"x", to).await.unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                assert!(std::time::Instant::now() < deadline, "nothing arrived");
                b.readable().await.unwrap();
                match batch.recv(&b) {
                    Ok(n) => {
                        assert_eq!(n, 1);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let after = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let got: Vec<_> = batch.arrivals().collect();
            // Handled a while after it arrived: the stamp, moved onto the monotonic clock, is
            // that much earlier than the time it is handled.
            let late = Duration::from_millis(300);
            let now = std::time::Instant::now() + late;
            let at: Vec<Instant> = batch
                .datagrams_at(now, hnth_net::realtime() + late)
                .map(|d| d.0)
                .collect();
            if stamped {
                assert_eq!(got.len(), 1);
                assert!(
                    got[0] >= before && got[0] <= after,
                    "{got:?} not in {before:?}..{after:?}"
                );
                assert!(
                    now - at[0] >= late,
                    "arrived {:?} before handled",
                    now - at[0]
                );
            } else {
                assert!(got.is_empty(), "{got:?}");
                assert_eq!(at, vec![now]);
            }
        }
    }
}
