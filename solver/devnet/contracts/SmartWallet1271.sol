// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {LibSignatures} from "./LibSignatures.sol";

/// Minimal contract wallet for testing EIP-1271 (ERC-4337-style) logins: a signature is valid
/// when it is its owner EOA's ECDSA signature of the hash. The owner can make it call anything,
/// e.g. MultiAccount.addAccount, so it can own sub-accounts.
contract SmartWallet1271 {
    bytes4 internal constant MAGIC_VALUE = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;

    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        address signer = LibSignatures.recover(hash, signature);
        return signer != address(0) && signer == owner ? MAGIC_VALUE : INVALID;
    }

    function execute(address target, bytes calldata data) external payable returns (bytes memory result) {
        require(msg.sender == owner, "SmartWallet1271: Only owner");
        bool success;
        (success, result) = target.call{value: msg.value}(data);
        if (!success) {
            assembly {
                revert(add(result, 32), mload(result))
            }
        }
    }

    receive() external payable {}
}
