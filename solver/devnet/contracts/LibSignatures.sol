// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {SchnorrSign, PublicKey} from "./SymmioTypes.sol";

/// ECDSA recovery and the Schnorr check of chain.md §6. Both return a result instead of
/// reverting so callers choose their own revert string.
library LibSignatures {
    // secp256k1 group order.
    uint256 internal constant Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant HALF_Q = (Q >> 1) + 1;
    // Upper bound for a canonical (low-s) ECDSA s value, as EIP-2 requires.
    uint256 internal constant MAX_LOW_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// Address that produced a 65-byte (r, s, v) signature over `hash`; address(0) when malformed.
    function recover(bytes32 hash, bytes memory signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (v < 27) v += 27; // accept 0/1 as well as 27/28
        if (v != 27 && v != 28) return address(0);
        if (uint256(s) > MAX_LOW_S) return address(0);
        return ecrecover(hash, v, r, s);
    }

    /// EIP-191 "personal_sign" digest of a 32-byte hash.
    function toEthSignedMessageHash(bytes32 hash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash));
    }

    /// Schnorr verification by ecrecover: recovers s·G + e·P and compares its address with the
    /// signature's nonce address (chain.md §6). `parity` is 0 or 1.
    function schnorrVerify(PublicKey memory key, uint256 msgHash, SchnorrSign memory sign)
        internal
        pure
        returns (bool)
    {
        if (key.x == 0 || key.x >= HALF_Q || key.parity > 1) return false;
        if (sign.signature == 0 || sign.signature >= Q || sign.nonce == address(0) || msgHash == 0) return false;
        uint256 e = uint256(keccak256(abi.encodePacked(key.x, key.parity, msgHash, sign.nonce)));
        address recovered = ecrecover(
            bytes32(Q - mulmod(key.x, sign.signature, Q)), 27 + key.parity, bytes32(key.x), bytes32(mulmod(e, key.x, Q))
        );
        return recovered != address(0) && recovered == sign.nonce;
    }
}
