//! Thin wrappers over the Linux calls the forwarder and the blaster use: recvmmsg/sendmmsg over
//! preallocated buffers, socket buffer sizes, CPU pinning, and the process's CPU time.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::null_mut;

/// Largest datagram handled; every buffer slot has this size.
pub const SLOT: usize = 2048;

pub fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

pub fn from_sockaddr(s: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        u32::from_be(s.sin_addr.s_addr).into(),
        u16::from_be(s.sin_port),
    )
}

/// `n` datagram slots with their iovecs, source/destination addresses and mmsghdrs, allocated once.
/// The raw pointers inside `hdrs` point into the other vectors' heap buffers, which never grow.
pub struct Batch {
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    hdrs: Vec<libc::mmsghdr>,
    /// Room for each datagram's control message (the kernel's arrival stamp), 8-aligned.
    ctrl: Vec<[u64; CTRL_WORDS]>,
}

/// Room for the arrival stamp's control message, in u64 words.
const CTRL_WORDS: usize = hnth_net::STAMP_CONTROL_BYTES / 8;

impl Batch {
    pub fn new(n: usize) -> Batch {
        let mut b = Batch {
            bufs: vec![0u8; n * SLOT],
            // SAFETY: plain old data, zero is valid (null pointers, zero lengths).
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            ctrl: vec![[0; CTRL_WORDS]; n],
        };
        for i in 0..n {
            b.iovs[i].iov_base = b.bufs[i * SLOT..].as_mut_ptr().cast();
            b.iovs[i].iov_len = SLOT;
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
        }
        b
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Slot `i` as a whole, to write a datagram into.
    pub fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * SLOT..(i + 1) * SLOT]
    }

    /// The datagram received into slot `i`.
    pub fn received(&mut self, i: usize) -> &mut [u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT);
        &mut self.bufs[i * SLOT..i * SLOT + len]
    }

    pub fn source(&self, i: usize) -> SocketAddrV4 {
        from_sockaddr(&self.addrs[i])
    }

    /// Receives up to `capacity()` datagrams (one syscall). `flags`: MSG_WAITFORONE to block for
    /// the first one, MSG_DONTWAIT not to block at all.
    pub fn recv(&mut self, sock: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        let n = self.hdrs.len();
        for i in 0..n {
            self.iovs[i].iov_len = SLOT;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; CTRL_WORDS]>() as _;
        }
        // SAFETY: every header points at live buffers of the stated sizes.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                null_mut(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// The kernel's arrival stamp of received datagram `i` (realtime clock), when the socket
    /// asked for them ([`enable_arrival_stamps`]).
    pub fn arrival(&self, i: usize) -> Option<std::time::Duration> {
        hnth_net::arrival_stamp(&self.hdrs[i].msg_hdr)
    }

    /// Marks slot `i` to be sent with `len` bytes, to `dest` (null: the connected peer).
    /// `dest` must stay valid until `send` returns.
    pub fn set_outgoing(&mut self, i: usize, len: usize, dest: *const libc::sockaddr_in) {
        self.iovs[i].iov_len = len;
        let h = &mut self.hdrs[i].msg_hdr;
        h.msg_control = null_mut();
        h.msg_controllen = 0;
        h.msg_name = dest as *mut libc::c_void;
        h.msg_namelen = if dest.is_null() {
            0
        } else {
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        };
    }

    /// Sends slots `0..count` with sendmmsg (as many calls as needed). Returns the datagrams sent;
    /// a datagram the kernel refuses is skipped (counted as not sent).
    pub fn send(&mut self, sock: &UdpSocket, count: usize) -> usize {
        let mut done = 0;
        let mut sent = 0;
        while done < count {
            let chunk = (count - done).min(1024); // UIO_MAXIOV
                                                  // SAFETY: headers done..done+chunk point at live buffers and addresses.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs[done..].as_mut_ptr(),
                    chunk as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                done += 1; // skip the datagram that failed
            } else {
                done += r as usize;
                sent += r as usize;
            }
        }
        sent
    }
}

/// The kernel's arrival stamps (read back by [`Batch::arrival`]): the delay the forwarder adds
/// is measured from there, as hnth's `/metrics` measures its own.
pub use hnth_net::{enable_arrival_stamps, realtime};

/// Large socket buffers, so bursts do not overflow them: the *FORCE options when root, the
/// ordinary ones (capped by net.core.*mem_max) otherwise; as hnth's media sockets.
pub fn set_buffers(sock: &UdpSocket, bytes: usize) {
    let _ = hnth_net::size_buffers(sock, bytes);
}

/// Pins the calling process (all its future threads) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; CPU_SET stays within it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn cpus_allowed() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time (user + system) of this process so far, in microseconds.
pub fn cpu_time_us() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Asks the kernel to kill this process when its parent dies (the driver's forwarder child).
pub fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Waits until one of `socks` is readable or `timeout` has passed (µs precision, unlike poll).
/// Returns which sockets are readable.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: fds is a valid slice of pollfd.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

pub fn pollfd(sock: &UdpSocket) -> libc::pollfd {
    libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}
