/* Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng Rust's std uses
   for random numbers on Windows. This stand-in forwards to BCryptGenRandom. */
#include <windows.h>
#include <bcrypt.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}
