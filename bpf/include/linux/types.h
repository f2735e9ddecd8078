/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * types.h stands in for the kernel's <linux/types.h> and its chain of
 * architecture headers: the BPF target needs only these fixed-width types,
 * and a self-contained definition keeps the build independent of the host's
 * asm/ headers.
 */
#ifndef __SHADOWTEE_LINUX_TYPES_H
#define __SHADOWTEE_LINUX_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u16 __le16;
typedef __u32 __le32;
typedef __u64 __le64;
typedef __u16 __sum16;
typedef __u32 __wsum;

typedef __u64 __aligned_u64 __attribute__((aligned(8)));

#endif
