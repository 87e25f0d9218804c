//! Linux socket details shared by hnth's media driver and `hnth-limit`'s forwarder: socket
//! buffer sizes, and the kernel's arrival stamp of each datagram (`SO_TIMESTAMPNS`, the
//! realtime clock), so that both measure the delay they add from the same instant.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Ask the kernel to stamp every datagram with its arrival time; the stamp comes as a control
/// message of `recvmsg`/`recvmmsg`, read by [`arrival_stamp`].
pub fn enable_arrival_stamps(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SO_TIMESTAMPNS, 1)
}

/// `setsockopt(SOL_SOCKET, name, value)` for an integer option.
pub fn set_int_option(
    socket: &impl AsRawFd,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a plain setsockopt on the caller's descriptor with a correctly sized int.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Give the socket `bytes` of receive and send buffer, so that a burst (every site's keyframe
/// at once, a turn of the worker spent fanning one out) waits in the kernel instead of being
/// dropped: Linux's default of 208 KiB holds about 90 media datagrams, 10 ms of a 100-site
/// meeting. `SO_RCVBUFFORCE` passes `net.core.rmem_max` when the server may (CAP_NET_ADMIN);
/// otherwise the system's maximum applies. Returns the receive buffer the kernel granted
/// (it counts its own bookkeeping, so this is about twice what was asked).
pub fn size_buffers(socket: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let want = bytes.min(libc::c_int::MAX as usize) as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(socket, force, want).is_err() {
            set_int_option(socket, plain, want)?;
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a correctly sized int on our own descriptor.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got.max(0) as usize)
}

/// Bytes of control buffer a received datagram needs for its stamp (one `timespec` message,
/// with slack); the buffer must be 8-aligned, as `cmsghdr` is.
pub const STAMP_CONTROL_BYTES: usize = 64;

/// The SCM_TIMESTAMPNS control message of a received datagram, if there is one.
pub fn arrival_stamp(hdr: &libc::msghdr) -> Option<Duration> {
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the CMSG_* macros walk
    // only within it, and a timestamp message carries one timespec.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(Duration::new(
                    u64::try_from(ts.tv_sec).ok()?,
                    u32::try_from(ts.tv_nsec).ok()?,
                ));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Now on the clock of the arrival stamps.
pub fn realtime() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// One datagram over loopback, received with `recvmsg`: stamped when asked, not otherwise.
    fn receive_one(stamped: bool) -> Option<Duration> {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        if stamped {
            enable_arrival_stamps(&rx).unwrap();
        }
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let mut ctrl = [0u64; STAMP_CONTROL_BYTES / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: plain old data; the pointers set below stay valid during recvmsg.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = ctrl.as_mut_ptr().cast();
        hdr.msg_controllen = STAMP_CONTROL_BYTES as _;
        // SAFETY: blocking receive into the buffers described by `hdr`.
        let n = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut hdr, 0) };
        assert_eq!(n, 1);
        arrival_stamp(&hdr)
    }

    #[test]
    fn socket_buffers_grow_past_the_default() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = size_buffers(&s, 0).unwrap();
        let got = size_buffers(&s, 4 << 20).unwrap();
        // Whether forced or capped by net.core.rmem_max, more than Linux's small minimum.
        assert!(got > before, "receive buffer {before} -> {got}");
    }

    #[test]
    fn stamps_come_only_when_asked_for_and_on_the_realtime_clock() {
        let before = realtime();
        let stamp = receive_one(true).expect("a stamp");
        let after = realtime();
        assert!(
            before <= stamp && stamp <= after,
            "{before:?} {stamp:?} {after:?}"
        );
        assert_eq!(receive_one(false), None);
    }
}
